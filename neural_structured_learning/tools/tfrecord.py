"""TFRecord files read and written without TensorFlow, with CRC checks.

A TFRecord file is a sequence of records, each framed as

    uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)

(little-endian), where `masked_crc32c(x) = ((c >> 15) | (c << 17)) +
0xa282ead8 mod 2**32` with `c` the CRC-32C (Castagnoli) of `x`. This module
reads and writes exactly that framing (uncompressed files, as NSL 1.4), using
the `crc32c` package for the checksums. Every record read is checked; a
mismatch or a truncated record raises `TFRecordError` naming the file, the
record index and its byte offset.

    >>> import tempfile, os
    >>> from neural_structured_learning.tools import tfrecord
    >>> path = os.path.join(tempfile.mkdtemp(), "data.tfr")
    >>> tfrecord.write_records(path, [b"first", b"second"])
    2
    >>> list(tfrecord.iter_records(path))
    [b'first', b'second']
"""

import os
import struct

try:
    import crc32c
except ModuleNotFoundError as _error_import:
    raise ModuleNotFoundError(
        "TFRecord files are read and written with the `crc32c` package, "
        "which is not installed: pip install "
        "'neural-structured-learning-keras[tools]' (or crc32c>=2.3).",
        name="crc32c") from _error_import

from neural_structured_learning.tools import _fileio

__all__ = [
    "TFRecordError",
    "TFRecordWriter",
    "iter_records",
    "masked_crc32c",
    "write_records",
]

_HEADER = struct.Struct("<QI")
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_HEADER_SIZE = _HEADER.size  # 12
_FRAME_OVERHEAD = _HEADER_SIZE + _CRC.size  # 16
_MASK_DELTA = 0xA282EAD8
_GZIP_MAGIC = b"\x1f\x8b"


class TFRecordError(ValueError):
    """A TFRecord file is corrupt, truncated, or not a TFRecord file."""


def masked_crc32c(data):
    """Returns the masked CRC-32C of `data`, as stored in TFRecord files."""
    crc = crc32c.crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def _frame(data):
    length = _LENGTH.pack(len(data))
    return b"".join((length, _CRC.pack(masked_crc32c(length)), data,
                     _CRC.pack(masked_crc32c(data))))


def _error(path, index, offset, problem):
    return TFRecordError(
        f"Corrupt TFRecord file {path!r}: record {index} at byte offset "
        f"{offset}: {problem}")


def _check_header(path, index, offset, header):
    """Returns the data length stored in a record header, after checking it."""
    length, stored = _HEADER.unpack(header)
    computed = masked_crc32c(header[:8])
    if stored != computed:
        hint = ""
        if offset == 0 and header.startswith(_GZIP_MAGIC):
            hint = (" The file looks GZIP-compressed; decompress it first "
                    "(only uncompressed TFRecord files are read).")
        raise _error(path, index, offset,
                     f"length CRC mismatch (stored {stored:#010x}, computed "
                     f"{computed:#010x}); the file is damaged or not a "
                     f"TFRecord file.{hint}")
    return length


def _check_data(path, index, offset, data, stored):
    computed = masked_crc32c(data)
    if stored != computed:
        raise _error(path, index, offset,
                     f"data CRC mismatch (stored {stored:#010x}, computed "
                     f"{computed:#010x}); the record's {len(data)} bytes are "
                     "damaged.")


def iter_file_records(path):
    """Yields `(offset, data)` for each record of one TFRecord file.

    Args:
        path: name of an uncompressed TFRecord file.

    Yields:
        `(offset, data)`: the byte offset where the record's frame starts and
        the record's payload (`bytes`).

    Raises:
        TFRecordError: on a CRC mismatch or a truncated record.
    """
    path = os.fspath(path)
    with open(path, "rb", buffering=1 << 20) as f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        index = 0
        while True:
            header = f.read(_HEADER_SIZE)
            if not header:
                return
            if len(header) < _HEADER_SIZE:
                raise _error(path, index, offset,
                             f"the file ends inside the record header "
                             f"({len(header)} of {_HEADER_SIZE} bytes).")
            length = _check_header(path, index, offset, header)
            remaining = size - offset - _HEADER_SIZE
            if length + _CRC.size > remaining:
                # Checked before reading: a damaged length could claim
                # terabytes, and allocating them fails with a MemoryError.
                raise _error(path, index, offset,
                             f"the file ends inside the record: expected "
                             f"{length} data bytes and a 4-byte CRC, found "
                             f"{max(remaining, 0)} bytes (file size {size}; "
                             "a damaged length field can also claim more "
                             "than the file holds).")
            body = f.read(length + _CRC.size)
            if len(body) < length + _CRC.size:
                raise _error(path, index, offset,
                             f"the file ends inside the record: expected "
                             f"{length} data bytes and a 4-byte CRC, found "
                             f"{len(body)} bytes.")
            data = body[:length]
            _check_data(path, index, offset, data,
                        _CRC.unpack_from(body, length)[0])
            yield offset, data
            offset += length + _FRAME_OVERHEAD
            index += 1


def iter_records(paths):
    """Yields the payload of every record of one or more TFRecord files.

    Args:
        paths: a file name, a glob (e.g. `"data-*.tfr"`), or a list of them;
            files are read in the order given, glob matches in sorted order.

    Yields:
        Each record's payload, as `bytes`.

    Raises:
        FileNotFoundError: if a file does not exist or a glob matches nothing.
        TFRecordError: on a CRC mismatch or a truncated record.
    """
    for path in _fileio.expand_paths(paths, what="`paths`"):
        for _, data in iter_file_records(path):
            yield data


def read_record_at(fd, offset, length, *, path, index):
    """Reads the record whose frame starts at `offset`, checking its data CRC.

    For random access to records found earlier by `iter_file_records` (which
    checked their headers): reads the payload and its CRC with one
    `os.pread` and checks the CRC again.

    Args:
        fd: an OS-level file descriptor open for reading.
        offset: byte offset of the record's frame, from `iter_file_records`.
        length: the record's payload length.
        path: the file's name, for error messages.
        index: the record's index in its file, for error messages.

    Returns:
        The payload (`bytes`).

    Raises:
        TFRecordError: if the bytes there are no longer that record.
    """
    body = os.pread(fd, length + _CRC.size, offset + _HEADER_SIZE)
    if len(body) < length + _CRC.size:
        raise _error(path, index, offset,
                     "the file is shorter than when it was first read.")
    data = body[:length]
    _check_data(path, index, offset, data, _CRC.unpack_from(body, length)[0])
    return data


class TFRecordWriter:
    """Writes records to a TFRecord file atomically.

    Records go to a temporary file in the same directory, which replaces
    `path` when the writer is closed without error (the `with` block exits
    normally); if the block raises, the temporary file is deleted and `path`
    is left as it was.

        with TFRecordWriter("out.tfr") as writer:
            writer.write(example.SerializeToString())

    Args:
        path: the output file name.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self.count = 0
        self._context = None
        self._file = None

    def __enter__(self):
        self._context = _fileio.atomic_output(self.path, "wb")
        self._file = self._context.__enter__()
        return self

    def write(self, data):
        """Appends one record whose payload is `data` (`bytes`)."""
        self._file.write(_frame(data))
        self.count += 1

    def __exit__(self, *exc_info):
        context, self._context, self._file = self._context, None, None
        return context.__exit__(*exc_info)


def write_records(path, records):
    """Writes `records` (an iterable of `bytes`) to a TFRecord file atomically.

    Args:
        path: the output file name.
        records: iterable of payloads.

    Returns:
        The number of records written.
    """
    with TFRecordWriter(path) as writer:
        for data in records:
            writer.write(data)
    return writer.count
