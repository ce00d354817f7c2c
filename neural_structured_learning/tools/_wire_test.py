"""Tests for _wire.py: bulk reading and hand-written `tf.train.Example`s."""

import numpy as np
import pytest

from neural_structured_learning.tools import _wire
from neural_structured_learning.tools import example_proto


def _u8(data):
    return np.frombuffer(data, np.uint8)


def _walk(records):
    buffer = b"".join(records)
    ends = np.cumsum([len(r) for r in records])
    return buffer, _wire.example_entries(_u8(buffer), ends - [len(r) for r in
                                                              records], ends)


def _entry(key, feature, value_first=False):
    fields = [_wire.field(0x0A, key), _wire.field(0x12, feature)]
    return _wire.field(0x0A, b"".join(fields[::-1] if value_first else fields))


FEATURE = example_proto.make_example({"x": [1.5, 2.5]}).features.feature[
    "x"].SerializeToString()


def test_varints_round_trip():
    values = [0, 1, 127, 128, 300, 2**21, 2**28 + 5, 2**34]
    data = b"".join(_wire.varint(v) for v in values)
    sizes = [len(_wire.varint(v)) for v in values]
    pos = np.cumsum([0] + sizes[:-1])
    ok = np.ones(len(values), bool)
    got, ends = _wire.read_varints(_u8(data), pos, len(data), ok)
    assert ok.all() and got.tolist() == values
    assert ends.tolist() == np.cumsum(sizes).tolist()
    assert _wire.varint_sizes(np.array(values)).tolist() == sizes
    # A varint cut by its limit, or longer than 5 bytes, is not read.
    ok = np.ones(2, bool)
    _wire.read_varints(_u8(b"\x80\x80" + b"\xff" * 6 + b"\x01"),
                       np.array([0, 2]), np.array([1, 9]), ok)
    assert ok.tolist() == [False, False]


def test_example_entries_of_serialized_examples():
    examples = [{"id": [b"a"], "x": [1.0, 2.0], "n": [3, -4]}, {},
                {"a_longer_key" * 20: [b"v" * 300]}]
    records = [example_proto.make_example(e).SerializeToString()
               for e in examples]
    buffer, (regular, features_start, entries) = _walk(records)
    assert regular.all()
    assert entries.record.tolist() == [0, 0, 0, 2]
    keys = [buffer[a:b] for a, b in zip(entries.key_start, entries.key_end)]
    parsed = example_proto.Example.FromString(records[0]).features.feature
    assert sorted(keys[:3]) == [b"id", b"n", b"x"]
    for e in range(3):
        feature = buffer[entries.payload_start[e]:entries.end[e]]
        assert feature == parsed[keys[e].decode()].SerializeToString()
        assert buffer[entries.value_start[e]] == 0x12
    assert features_start[1] == len(records[0])  # the empty record
    assert entries.last_per_record(entries.with_key(_u8(buffer), b"n"),
                                   3).tolist() == [keys.index(b"n"), -1, -1]


def test_irregular_records_are_flagged():
    regular_record = _wire.example(_entry(b"k", FEATURE))
    records = [
        regular_record,
        _wire.example(_entry(b"k", FEATURE, value_first=True)),
        _wire.example(_wire.field(0x0A, _wire.field(0x0A, b"k"))),  # no value
        regular_record + _wire.field(0x12, b"unknown"),  # unknown field
        _wire.example(b"") + _wire.example(_entry(b"k", FEATURE)),  # merged
        b"\x0a\x05\x0a\x03\x0a\x01",  # truncated
    ]
    _, (regular, _, entries) = _walk(records)
    assert regular.tolist() == [True] + [False] * 5
    assert entries.record.tolist() == [0]


def test_value_readers():
    records = [example_proto.make_example(e).features.feature["v"]
               .SerializeToString() for e in (
                   {"v": [b"one"]}, {"v": [b"a", b"b"]}, {"v": [1.0, 2.0]},
                   {"v": []}, {"v": [7]})]
    buffer = b"".join(records)
    ends = np.cumsum([len(r) for r in records])
    starts = ends - [len(r) for r in records]
    ok, start, end = _wire.single_bytes_values(_u8(buffer), starts, ends)
    assert ok.tolist() == [True, False, False, False, False]
    assert buffer[start[0]:end[0]] == b"one"
    ok, start, _ = _wire.packed_float_values(_u8(buffer), starts, ends)
    assert ok.tolist() == [False, False, True, False, False]
    assert _wire.gather_floats(buffer, start[2:3], 2).tolist() == [[1.0, 2.0]]


def test_gather_floats_any_alignment():
    values = np.arange(12, dtype="<f4")
    buffer = b"xyz" + values.tobytes()
    starts = np.array([3, 7, 11])
    assert _wire.gather_floats(buffer, starts, 2).tolist() == [
        [0, 1], [1, 2], [2, 3]]
    buffer = b"x" + values.tobytes()
    assert _wire.gather_floats(buffer, np.array([1, 5]), 3).tolist() == [
        [0, 1, 2], [1, 2, 3]]


def test_written_entries_parse_as_protobuf():
    data = _wire.example(
        _wire.map_entry(b"n", _wire.int64_feature([-1, 0, 2**40]))
        + _wire.map_entry(b"f", _wire.float_feature([0.1, 1e300])))
    parsed = example_proto.example_to_dict(
        example_proto.Example.FromString(data))
    assert parsed["n"] == [-1, 0, 2**40]
    assert parsed["f"] == [pytest.approx(0.1), float("inf")]
    rows, key_at = _wire.float_entry_rows(b"key_0", [1.0, 3.0])
    rows[1, key_at + 4] = ord("7")
    parsed = example_proto.example_to_dict(example_proto.Example.FromString(
        _wire.example(rows.tobytes())))
    assert parsed == {"key_0": [1.0], "key_7": [3.0]}


def _valid(records):
    buffer, (regular, _, entries) = _walk(records)
    return _wire.valid_examples(_u8(buffer), regular, entries).tolist()


def _parses(record):
    try:
        example_proto.Example.FromString(record)
        return True
    except Exception:  # pylint: disable=broad-except
        return False


def test_valid_examples_accepts_what_serializers_write():
    examples = [{}, {"id": [b"a"], "x": [1.0, -2.5], "n": [3, -1, 2**62]},
                {"e": []}, {"b": [b""] * 16, "k\x7f": [0]},
                {"long": list(range(-300, 300))}]
    records = [example_proto.make_example(e).SerializeToString()
               for e in examples]
    records.append(b"")  # an empty Example
    records.append(_wire.example(_wire.map_entry(b"k", b"")))  # empty Feature
    records.append(_wire.example(_wire.map_entry(
        b"k", _wire.field(0x12, _wire.field(0x0A, b"")))))  # packed, empty
    assert _valid(records) == [True] * len(records)


def test_valid_examples_leaves_the_rest_to_protobuf():
    int_list = lambda data: _wire.field(0x1A, _wire.field(0x0A, data))
    features = {
        "non-ASCII key": (b"\xc3\xa9", FEATURE, True),
        "bad UTF-8 key": (b"\xff", FEATURE, False),
        "17 bytes values": (b"k", _wire.field(0x0A, b"\x0a\x00" * 17), True),
        "unknown field": (b"k", _wire.field(0x22, b""), True),
        "two lists": (b"k", FEATURE + FEATURE, True),
        "unpacked float": (b"k", _wire.field(0x12, b"\x0d" + bytes(4)), True),
        "float bytes % 4": (b"k", _wire.field(0x12, _wire.field(
            0x0A, b"abc")), False),
        "cut varint": (b"k", int_list(b"\x01\x80"), False),
        "11-byte varint": (b"k", int_list(b"\xff" * 10 + b"\x01"), False),
        "10th byte > 1": (b"k", int_list(b"\xff" * 9 + b"\x02"), True),
        "cut bytes value": (b"k", _wire.field(0x0A, b"\x0a\x05ab"), False),
    }
    for name, (key, feature, parses) in features.items():
        record = _wire.example(_wire.map_entry(key, feature))
        assert _parses(record) == parses, name
        assert _valid([record]) == [False], name


def test_valid_examples_is_never_wrong_on_mutated_records():
    rng = np.random.default_rng(0)
    base = [example_proto.make_example(e).SerializeToString() for e in (
        {"id": [b"node"], "x": [1.0, 2.0], "n": [5, -1]},
        {"b": [b"a", b"bc", b""], "f": [], "i": [2**40]})]
    records = []
    for _ in range(3000):
        record = bytearray(base[rng.integers(2)])
        for _ in range(rng.integers(1, 4)):
            at = int(rng.integers(len(record)))
            kind = rng.integers(3)
            if kind == 0:
                record[at] = int(rng.integers(256))
            elif kind == 1:
                del record[at]
            else:
                record.insert(at, int(rng.choice([0x00, 0x01, 0x0A, 0x12,
                                                  0x1A, 0x80, 0xFF])))
        records.append(bytes(record))
    valid = _valid(records)
    assert 100 < sum(valid) < len(records)  # both outcomes occur
    for record, ok in zip(records, valid):
        if ok:
            assert _parses(record), record


def test_whole_varints_in_batches():
    runs = [b"\x01\x02", b"\xff" * 9 + b"\x01", b"\xff" * 10 + b"\x01",
            b"\x80", b"\x05", b"\xff\x7f"]
    buffer = _u8(b"".join(runs))
    ends = np.cumsum([len(r) for r in runs])
    starts = ends - [len(r) for r in runs]
    for batch_bytes in (1, 3, 12, 1 << 22):  # one run, some, all at a time
        assert _wire._whole_varints(buffer, starts, ends,
                                    batch_bytes).tolist() == [
                                        True, True, False, False, True, True]
