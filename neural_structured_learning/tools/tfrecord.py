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

import numpy as np

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
    "FRAME_OVERHEAD",
    "RecordChunk",
    "TFRecordError",
    "TFRecordWriter",
    "frame_in_place",
    "iter_record_chunks",
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


class RecordChunk:
    """Consecutive records of one TFRecord file, read in one piece.

    Attributes:
        buffer: the file's bytes that hold these records (`bytes`).
        data_starts: int64 array, where each record's payload starts in
            `buffer`.
        lengths: int64 array, each payload's length.
        offsets: int64 array, the byte offset of each record's frame in
            the file.
        first_index: the index in the file of the first record.
    """

    __slots__ = ("buffer", "data_starts", "lengths", "offsets",
                 "first_index")

    def __init__(self, buffer, data_starts, lengths, offsets, first_index):
        self.buffer = buffer
        self.data_starts = data_starts
        self.lengths = lengths
        self.offsets = offsets
        self.first_index = first_index

    def __len__(self):
        return len(self.lengths)

    def data(self, i):
        """The payload of record `i` of the chunk (`bytes`)."""
        start = int(self.data_starts[i])
        return self.buffer[start:start + int(self.lengths[i])]


_CHUNK_BYTES = 1 << 24


def _crc32c_table():
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78),
                         table >> 1).astype(np.uint32)
    return table


_CRC32C_TABLE = _crc32c_table()


def _masked_crc32c_rows(rows):
    """`masked_crc32c` of each row of a 2-D uint8 array (vectorized)."""
    crc = np.full(len(rows), 0xFFFFFFFF, np.uint32)
    for column in range(rows.shape[1]):
        crc = _CRC32C_TABLE[(crc ^ rows[:, column]) & 0xFF] ^ (crc >> 8)
    return _mask(crc ^ np.uint32(0xFFFFFFFF))


def _mask(crc):
    crc = crc.astype(np.uint64)
    rotated = ((crc >> np.uint64(15)) | (crc << np.uint64(17))) & np.uint64(
        0xFFFFFFFF)
    return (rotated + np.uint64(_MASK_DELTA)) & np.uint64(0xFFFFFFFF)


def _crc32c_of_slices(buffer, starts, ends):
    """CRC-32C (unmasked) of `buffer[s:e]` for each `s, e` (uint32 array)."""
    view = memoryview(buffer)
    return np.fromiter(map(crc32c.crc32c, map(view.__getitem__, map(
        slice, starts.tolist(), ends.tolist()))), np.uint32, len(starts))


def _headers(lengths):
    """The 12-byte frame header of each payload length: `(n, 12)` uint8."""
    header = np.empty((len(lengths), _HEADER_SIZE), np.uint8)
    header[:, :8] = np.asarray(lengths).astype("<u8").view(
        np.uint8).reshape(-1, 8)
    header[:, 8:] = _masked_crc32c_rows(header[:, :8]).astype(
        "<u4").view(np.uint8).reshape(-1, 4)
    return header


def _frame_starts(buffer):
    """Frame starts of the records that lie entirely in `buffer`.

    Returns `(starts, stop)`: a list of offsets and where the first record
    that does not fit starts. Lengths are trusted here; CRCs are checked
    afterwards (`_verified_prefix`).
    """
    unpack = _LENGTH.unpack_from
    end = len(buffer)
    starts = []
    append = starts.append
    pos = 0
    while pos + _HEADER_SIZE <= end:
        stop = pos + _FRAME_OVERHEAD + unpack(buffer, pos)[0]
        if stop > end:
            break
        append(pos)
        pos = stop
    return starts, pos


def _verified_prefix(path, buffer, starts, base, first_index):
    """Checks the CRCs of the framed records; returns a `RecordChunk`.

    Returns `(chunk, error)`: the records before the first bad one, and the
    `TFRecordError` for it (or None).
    """
    u8 = np.frombuffer(buffer, np.uint8)
    starts = np.asarray(starts, np.int64)
    headers = u8[starts[:, None] + np.arange(_HEADER_SIZE)]
    lengths = headers[:, :8].copy().view("<u8").ravel().astype(np.int64)
    stored = headers[:, 8:].copy().view("<u4").ravel()
    data_starts = starts + _HEADER_SIZE
    ends = data_starts + lengths
    computed = _crc32c_of_slices(buffer, data_starts, ends)
    stored_data = u8[ends[:, None] + np.arange(_CRC.size)].copy().view(
        "<u4").ravel()
    bad = (stored != _masked_crc32c_rows(headers[:, :8])) | (
        stored_data != _mask(computed))
    error = None
    count = len(starts)
    if bad.any():
        count = int(np.flatnonzero(bad)[0])
        offset = base + int(starts[count])
        index = first_index + count
        try:
            _check_header(path, index, offset,
                          bytes(headers[count]))
            _check_data(path, index, offset,
                        buffer[data_starts[count]:ends[count]],
                        int(stored_data[count]))
        except TFRecordError as e:
            error = e
    chunk = RecordChunk(buffer, data_starts[:count], lengths[:count],
                        starts[:count] + base, first_index)
    return chunk, error


def iter_record_chunks(path, chunk_bytes=_CHUNK_BYTES):
    """Yields the records of one TFRecord file in chunks, CRCs checked.

    The fast counterpart of `iter_file_records` for code that processes
    records in bulk (NumPy): the file is read `chunk_bytes` at a time (more
    for a larger record), the frames of each piece are walked once and all
    CRCs checked together. Corrupt or truncated files raise the same
    `TFRecordError`s as `iter_file_records`, after yielding the records
    before the bad one.

    Args:
        path: name of an uncompressed TFRecord file.
        chunk_bytes: bytes read at a time.

    Yields:
        `RecordChunk`s, in file order (none for an empty file).

    Raises:
        TFRecordError: on a CRC mismatch or a truncated record.
    """
    path = os.fspath(path)
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        base = 0  # file offset of buffer[0]
        index = 0
        want = chunk_bytes
        while True:
            # Each read starts at a record: a record cut by the end of the
            # buffer is read again with the next one (from the page cache),
            # which costs less than copying the buffer's tail forward.
            f.seek(base)
            buffer = f.read(want)
            at_eof = len(buffer) < want
            starts, stop = _frame_starts(buffer)
            if starts:
                chunk, error = _verified_prefix(path, buffer, starts, base,
                                                index)
                if len(chunk):
                    yield chunk
                if error is not None:
                    raise error
            index += len(starts)
            pending = buffer[stop:stop + _HEADER_SIZE]
            base += stop
            if stop == len(buffer):
                if at_eof:
                    return
                want = chunk_bytes
                continue
            if at_eof:
                pending = buffer[stop:]
            if len(pending) < _HEADER_SIZE:
                if at_eof:
                    raise _error(path, index, base,
                                 f"the file ends inside the record header "
                                 f"({len(pending)} of {_HEADER_SIZE} "
                                 "bytes).")
                want = max(chunk_bytes, _HEADER_SIZE)
                continue
            length = _check_header(path, index, base,
                                   pending[:_HEADER_SIZE])
            remaining = size - base - _HEADER_SIZE
            if length + _CRC.size > remaining:
                raise _error(path, index, base,
                             f"the file ends inside the record: expected "
                             f"{length} data bytes and a 4-byte CRC, found "
                             f"{max(remaining, 0)} bytes (file size {size}; "
                             "a damaged length field can also claim more "
                             "than the file holds).")
            if at_eof:
                raise _error(path, index, base,
                             f"the file ends inside the record: expected "
                             f"{length} data bytes and a 4-byte CRC, found "
                             f"{len(pending) - _HEADER_SIZE} bytes.")
            want = max(chunk_bytes, length + _FRAME_OVERHEAD)


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


FRAME_OVERHEAD = _HEADER_SIZE + _CRC.size  # 16 bytes around each payload


def frame_in_place(buffer, lengths):
    """Frames records laid out back to back in a writable `uint8` array.

    Each record occupies `FRAME_OVERHEAD + length` bytes of `buffer`: 12
    reserved bytes, its payload, 4 reserved bytes. The reserved bytes are
    overwritten with the header (length, masked CRC of the length) and the
    masked CRC of the payload, which makes `buffer` a TFRecord file's bytes.

    Args:
        buffer: a writable 1-D `uint8` NumPy array.
        lengths: each record's payload length (ints).
    """
    lengths = np.asarray(lengths, np.int64)
    count = len(lengths)
    if not count:
        return
    sizes = lengths + FRAME_OVERHEAD
    starts = np.cumsum(sizes) - sizes
    if int(starts[-1] + sizes[-1]) != len(buffer):
        raise ValueError(f"The framed lengths add up to "
                         f"{int(starts[-1] + sizes[-1])} bytes, not to the "
                         f"{len(buffer)} of the buffer.")
    buffer[starts[:, None] + np.arange(_HEADER_SIZE)] = _headers(lengths)
    data_starts = starts + _HEADER_SIZE
    data_ends = data_starts + lengths
    crcs = _mask(_crc32c_of_slices(buffer, data_starts, data_ends))
    buffer[data_ends[:, None] + np.arange(_CRC.size)] = crcs.astype(
        "<u4").view(np.uint8).reshape(-1, _CRC.size)


def _pieces(blob, starts, size):
    """Object array of `blob[s:s + size]` for each start."""
    starts = starts.tolist()
    return np.fromiter(map(blob.__getitem__, map(
        slice, starts, [s + size for s in starts])), object, len(starts))


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

    def write_many(self, records):
        """Appends one record per payload of `records` (a list of `bytes`).

        The same bytes as calling `write` for each, with the framing of
        all records computed together.
        """
        self.write_block(b"".join(records), list(map(len, records)))

    def write_block(self, data, lengths):
        """Appends records whose payloads lie back to back in `data`.

        Args:
            data: the payloads, concatenated (`bytes`).
            lengths: the length of each payload (ints summing to
                `len(data)`).
        """
        count = len(lengths)
        if not count:
            return
        lengths = np.asarray(lengths, np.int64)
        ends = np.cumsum(lengths)
        if int(ends[-1]) != len(data):
            raise ValueError(f"The lengths add up to {int(ends[-1])}, not "
                             f"to the {len(data)} bytes of data.")
        starts = ends - lengths
        crcs = _mask(_crc32c_of_slices(data, starts, ends)).astype(
            "<u4").tobytes()
        headers = _headers(lengths).tobytes()
        view = memoryview(data)
        starts, ends = starts.tolist(), ends.tolist()
        # [header, payload, CRC] per record, assembled without a Python
        # loop (map and object arrays iterate in C).
        frames = np.empty(3 * count, object)
        at = np.arange(count)
        frames[0::3] = _pieces(headers, _HEADER_SIZE * at, _HEADER_SIZE)
        frames[1::3] = np.fromiter(map(view.__getitem__, map(slice, starts,
                                                             ends)),
                                   object, count)
        frames[2::3] = _pieces(crcs, _CRC.size * at, _CRC.size)
        self._file.write(b"".join(frames.tolist()))
        self.count += count

    def write_framed(self, data, count):
        """Appends `count` records already framed in `data` (bytes-like).

        `data` holds whole records, framing included, e.g. a buffer passed
        through `frame_in_place`.
        """
        self._file.write(data)
        self.count += count

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
