"""Tests for tfrecord.py and example_proto.py."""

import os

import numpy as np
import pytest

from neural_structured_learning.tools import example_proto
from neural_structured_learning.tools import tfrecord

# Written by tf.io.TFRecordWriter (TensorFlow 2.15.1): records b"hello", b"".
TF_HELLO = bytes.fromhex(
    "0500000000000000eab2043e68656c6c6fbb1f1c19"
    "000000000000000029039807d8ea82a2")

# tf.train.Example(id=[b"A"], label=[2], embedding=[0.5, -1.0]) serialized by
# TensorFlow 2.15.1 with deterministic=True (map keys in sorted order).
TF_EXAMPLE = bytes.fromhex(
    "0a380a190a09656d62656464696e67120c120a0a080000003f000080bf0a0b0a026964"
    "12050a030a01410a0e0a056c6162656c12051a030a0102")


def test_writer_matches_tensorflow_bytes(tmp_path):
    path = tmp_path / "hello.tfr"
    assert tfrecord.write_records(path, [b"hello", b""]) == 2
    assert path.read_bytes() == TF_HELLO


def test_reads_tensorflow_file(tmp_path):
    path = tmp_path / "hello.tfr"
    path.write_bytes(TF_HELLO)
    assert list(tfrecord.iter_records(str(path))) == [b"hello", b""]
    assert list(tfrecord.iter_file_records(path)) == [(0, b"hello"),
                                                      (21, b"")]


def test_round_trip_sharded_glob_and_list(tmp_path):
    for shard in range(3):
        tfrecord.write_records(tmp_path / f"part-{shard}.tfr",
                               [f"{shard}-{i}".encode() for i in range(2)])
    expected = [b"0-0", b"0-1", b"1-0", b"1-1", b"2-0", b"2-1"]
    assert list(tfrecord.iter_records(str(tmp_path / "part-*.tfr"))) == (
        expected)
    assert list(tfrecord.iter_records(
        [tmp_path / "part-2.tfr", tmp_path / "part-0.tfr"])) == (
            expected[4:] + expected[:2])


def test_missing_file_and_empty_glob(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file: .*nope\.tfr"):
        list(tfrecord.iter_records(str(tmp_path / "nope.tfr")))
    with pytest.raises(FileNotFoundError, match=r"pattern .*\*\.tfr' matches"):
        list(tfrecord.iter_records(str(tmp_path / "*.tfr")))


def _corrupt(tmp_path, position, value=None, truncate=None):
    data = bytearray(TF_HELLO)
    if value is not None:
        data[position] ^= value
    if truncate is not None:
        data = data[:truncate]
    path = tmp_path / "bad.tfr"
    path.write_bytes(bytes(data))
    return str(path)


@pytest.mark.parametrize("position,truncate,message", [
    (13, None, r"record 0 at byte offset 0: data CRC mismatch \(stored "
     r"0x191c1fbb, computed 0x[0-9a-f]{8}\)"),
    (0, None, r"record 0 at byte offset 0: length CRC mismatch"),
    (25, None, r"record 1 at byte offset 21: length CRC mismatch"),
    (None, 19, r"record 0 at byte offset 0: the file ends inside the record: "
     r"expected 5 data bytes and a 4-byte CRC, found 7 bytes"),
    (None, 26, r"record 1 at byte offset 21: the file ends inside the record "
     r"header \(5 of 12 bytes\)"),
])
def test_corruption_is_detected(tmp_path, position, truncate, message):
    path = _corrupt(tmp_path, position, 0x40 if position is not None else None,
                    truncate)
    with pytest.raises(tfrecord.TFRecordError,
                       match=r"Corrupt TFRecord file '.*bad\.tfr': " + message):
        list(tfrecord.iter_records(path))


def test_gzip_file_gets_a_hint(tmp_path):
    path = tmp_path / "data.tfr.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 20)
    with pytest.raises(tfrecord.TFRecordError, match="looks GZIP-compressed"):
        list(tfrecord.iter_records(str(path)))


def test_read_record_at_checks_the_record(tmp_path):
    path = tmp_path / "hello.tfr"
    path.write_bytes(TF_HELLO)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert tfrecord.read_record_at(fd, 0, 5, path="x", index=0) == b"hello"
        assert tfrecord.read_record_at(fd, 21, 0, path="x", index=1) == b""
        with pytest.raises(tfrecord.TFRecordError,
                           match="record 0 at byte offset 0: data CRC mismatch"):
            tfrecord.read_record_at(fd, 0, 4, path="x", index=0)
        with pytest.raises(tfrecord.TFRecordError,
                           match="record 1 at byte offset 21: the file is "
                           "shorter than when it was first read"):
            tfrecord.read_record_at(fd, 21, 9, path="x", index=1)
    finally:
        os.close(fd)


def test_writer_is_atomic(tmp_path):
    path = tmp_path / "out.tfr"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with tfrecord.TFRecordWriter(path) as writer:
            writer.write(b"new")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.tfr"]  # no temporary file left


def test_example_is_wire_compatible_with_tensorflow():
    parsed = example_proto.Example.FromString(TF_EXAMPLE)
    assert example_proto.example_to_dict(parsed) == {
        "embedding": [0.5, -1.0], "id": [b"A"], "label": [2]}
    built = example_proto.make_example(
        {"embedding": [0.5, -1.0], "id": ["A"], "label": [2]})
    assert built.SerializeToString(deterministic=True) == TF_EXAMPLE
    assert example_proto.Example.DESCRIPTOR.full_name == "tensorflow.Example"


def test_make_example_kinds_and_errors():
    example = example_proto.make_example(
        {"f": [1, 2.5], "i": [3], "b": [b"x", "y"], "e": []})
    assert example_proto.example_to_dict(example) == {
        "b": [b"x", b"y"], "e": [], "f": [1.0, 2.5], "i": [3]}
    with pytest.raises(TypeError, match="Feature 'm' mixes bytes/str and "
                       "numbers"):
        example_proto.make_example({"m": [b"x", 1]})
    with pytest.raises(TypeError, match="Feature 'z' has a value of type "
                       "dict"):
        example_proto.make_example({"z": [{}]})


def test_huge_record_length_is_checked_before_reading(tmp_path):
    # A header claiming a 1 TiB record (with a valid length CRC) must not
    # try to allocate it (MemoryError): the file ends inside the record.
    length = tfrecord._LENGTH.pack(1 << 40)
    header = length + tfrecord._CRC.pack(tfrecord.masked_crc32c(length))
    path = tmp_path / "huge.tfr"
    path.write_bytes(TF_HELLO + header + b"\x00" * 10)
    with pytest.raises(tfrecord.TFRecordError,
                       match=r"Corrupt TFRecord file '.*huge\.tfr': record 2 "
                       r"at byte offset 37: the file ends inside the "
                       r"record: expected 1099511627776 data bytes and a "
                       r"4-byte CRC, found 10 bytes \(file size 59"):
        list(tfrecord.iter_records(str(path)))


def test_missing_crc32c_names_the_extra(tmp_path):
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    code = ("import sys; sys.modules['crc32c'] = None\n"
            "from neural_structured_learning.tools import tfrecord\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, check=False)
    assert result.returncode != 0
    assert "ModuleNotFoundError: TFRecord files are read and written with " \
        "the `crc32c` package, which is not installed: pip install " \
        "'neural-structured-learning-keras[tools]'" in result.stderr


def test_writer_checks_the_output_directory(tmp_path):
    missing = tmp_path / "no" / "out.tfr"
    with pytest.raises(FileNotFoundError,
                       match=r"output: the output directory '.*no' of "
                       r"'.*out\.tfr' does not exist"):
        tfrecord.write_records(missing, [b"x"])
    with pytest.raises(IsADirectoryError, match=r"is a directory"):
        tfrecord.write_records(tmp_path, [b"x"])


def _read_both(path, chunk_bytes):
    """(records, error message) from iter_file_records and the chunk reader."""
    results = []
    for read in (lambda: tfrecord.iter_file_records(path),
                 lambda: ((int(c.offsets[i]), c.data(i))
                          for c in tfrecord.iter_record_chunks(
                              path, chunk_bytes) for i in range(len(c)))):
        got = []
        try:
            for record in read():
                got.append(record)
            error = None
        except tfrecord.TFRecordError as e:
            error = str(e)
        results.append((got, error))
    return results


@pytest.mark.parametrize("chunk_bytes", [1, 7, 30, 1 << 20])
def test_record_chunks_match_the_record_reader(tmp_path, chunk_bytes):
    path = tmp_path / "many.tfr"
    records = [bytes([k]) * (k * 37 % 300) for k in range(60)]
    tfrecord.write_records(path, records)
    (ours, error), (theirs, their_error) = _read_both(str(path), chunk_bytes)
    assert error is None and their_error is None
    assert ours == theirs and [data for _, data in ours] == records
    empty = tmp_path / "empty.tfr"
    empty.write_bytes(b"")
    assert not list(tfrecord.iter_record_chunks(str(empty)))


@pytest.mark.parametrize("chunk_bytes", [1, 30, 1 << 20])
@pytest.mark.parametrize("position,truncate", [
    (13, None), (0, None), (25, None), (34, None), (None, 19), (None, 26),
    (None, 37)])
def test_record_chunks_report_corruption_like_the_record_reader(
        tmp_path, position, truncate, chunk_bytes):
    path = _corrupt(tmp_path, position, 0x40 if position is not None else None,
                    truncate)
    (ours, error), (theirs, their_error) = _read_both(path, chunk_bytes)
    assert ours == theirs
    assert error == their_error and (error is not None or truncate == 37)


def test_record_chunks_gzip_hint_and_huge_length(tmp_path):
    path = tmp_path / "data.tfr.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 20)
    (_, error), (_, their_error) = _read_both(str(path), 1 << 20)
    assert "looks GZIP-compressed" in error and error == their_error
    length = tfrecord._LENGTH.pack(1 << 40)
    header = length + tfrecord._CRC.pack(tfrecord.masked_crc32c(length))
    path = tmp_path / "huge.tfr"
    path.write_bytes(TF_HELLO + header + b"\x00" * 10)
    (ours, error), (theirs, their_error) = _read_both(str(path), 8)
    assert len(ours) == 2 and ours == theirs
    assert "expected 1099511627776 data bytes" in error
    assert error == their_error


def test_write_many_is_write_repeated(tmp_path):
    records = [b"", b"a", b"x" * 200, bytes(range(256)) * 70]
    one, many = tmp_path / "one.tfr", tmp_path / "many.tfr"
    with tfrecord.TFRecordWriter(one) as writer:
        for data in records:
            writer.write(data)
    with tfrecord.TFRecordWriter(many) as writer:
        writer.write_many(records[:3])
        writer.write_many([])
        writer.write_many(records[3:])
    assert writer.count == 4
    assert many.read_bytes() == one.read_bytes()


def test_frame_in_place_writes_the_file_bytes(tmp_path):
    payloads = [b"", b"a", b"xyz" * 100]
    sizes = [len(p) + tfrecord.FRAME_OVERHEAD for p in payloads]
    buffer = np.full(sum(sizes), 0xEE, np.uint8)  # reserved bytes: garbage
    at = 0
    for payload, size in zip(payloads, sizes):
        buffer[at + 12:at + 12 + len(payload)] = np.frombuffer(payload,
                                                               np.uint8)
        at += size
    tfrecord.frame_in_place(buffer, [len(p) for p in payloads])
    path = tmp_path / "a.tfr"
    tfrecord.write_records(path, payloads)
    assert buffer.tobytes() == path.read_bytes()
    with pytest.raises(ValueError, match="add up to 17 bytes, not to"):
        tfrecord.frame_in_place(buffer, [1])
