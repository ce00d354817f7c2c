"""`tf.train.Example` wire format, read in bulk with NumPy and written by hand.

The tools read millions of small `tf.train.Example` records; building a
protobuf message for each and walking it from Python costs microseconds per
feature. This module instead walks the serialized bytes of many records at
once with NumPy ("lockstep": one array operation handles field `k` of every
record) and writes the few messages the tools produce directly as bytes.

Only the layout that TensorFlow and protobuf serializers write is handled
here ("regular" records):

    Example  = [0x0A len Features]                (or nothing at all)
    Features = [0x0A len entry]*                  (map<string, Feature>)
    entry    = [0x0A len key] [0x12 len Feature]  (key first, then value)

Anything else the protobuf parser also accepts (fields out of order, a
field repeated at the top level, unknown fields, a map entry without its
key or value, varints longer than 5 bytes) makes a record irregular; callers
handle those through the protobuf messages (`example_proto`), which define
the semantics. Keys and values of regular records are reported as byte
ranges of the buffer; nothing is copied. `valid_examples` shows in bulk
that most regular records are valid `Example`s, so that protobuf parses
only the others (`check_examples`): 4x cheaper than parsing them all.

Wire format reference: https://protobuf.dev/programming-guides/encoding/.
A map field is a repeated message field of entries `{1: key, 2: value}`;
when a key repeats, the parser keeps the last entry, and message fields
that repeat are merged, which is why the order of entries only matters for
repeated keys.
"""

import collections

import numpy as np

_MAX_VARINT_BYTES = 5  # lengths < 2**35; longer varints make a record irregular
_EMPTY = np.zeros(0, np.int64)


def read_varints(u8, pos, limit, ok):
    """Decodes the varint that starts at each `pos[i]` of `u8`.

    Args:
        u8: the buffer, a 1-D `uint8` array.
        pos: int64 array of start positions.
        limit: int64 array (or scalar): the varint must end at or before it.
        ok: bool array, updated in place: set to False where the varint is
            longer than 5 bytes or does not end before `limit`.

    Returns:
        `(values, ends)`: int64 arrays; `ends[i]` is the position after the
        varint. Entries where `ok` is False are meaningless.
    """
    n = len(u8)
    limit = np.broadcast_to(limit, pos.shape)
    if not n or not len(pos):
        ok[:] = False
        return np.zeros(len(pos), np.int64), pos + 1
    inside = pos < limit
    byte = u8[np.minimum(pos, n - 1)]
    values = (byte & 0x7F).astype(np.int64)
    ends = pos + 1
    ok &= inside
    more = np.flatnonzero(ok & (byte >= 0x80))
    shift = 7
    while len(more):
        if shift >= 7 * _MAX_VARINT_BYTES:
            ok[more] = False
            break
        at = pos[more] + shift // 7
        inside = at < limit[more]
        byte = u8[np.minimum(at, n - 1)]
        values[more] |= (byte & 0x7F).astype(np.int64) << shift
        ends[more] = at + 1
        ok[more[~inside]] = False
        more = more[inside & (byte >= 0x80)]
        shift += 7
    return values, ends


def _field(u8, pos, end, tag, ok):
    """Reads `[tag len payload]` at `pos`, inside `[pos, end)`.

    Returns `(payload_start, payload_end)`; clears `ok` where the tag differs
    or the field does not fit.
    """
    n = len(u8)
    inside = pos < end
    ok &= inside
    if n:
        ok &= u8[np.minimum(pos, n - 1)] == tag
    length, start = read_varints(u8, pos + 1, end, ok)
    stop = start + length
    ok &= stop <= end
    return start, stop


class Entries:
    """Map entries of the regular records of a buffer (see `example_entries`).

    All attributes are int64 arrays with one element per entry, sorted by
    record, then by position in the record:

    * `record`: index of the record (into the `starts` given).
    * `start`, `end`: the entry field, from its `0x0A` tag to its end.
    * `key_start`, `key_end`: the key's bytes.
    * `value_start`: the value field's `0x12` tag (so the value field is
      `[value_start, end)`); `payload_start`: the serialized `Feature`'s
      first byte (the `Feature` is `[payload_start, end)`).
    """

    __slots__ = ("record", "start", "end", "key_start", "key_end",
                 "value_start", "payload_start")

    def __init__(self, **columns):
        for name in self.__slots__:
            setattr(self, name, columns[name])

    def __len__(self):
        return len(self.record)

    def with_key(self, u8, key):
        """Boolean mask of the entries whose key is `key` (bytes)."""
        mask = (self.key_end - self.key_start) == len(key)
        if len(key) and mask.any():
            rows = np.flatnonzero(mask)
            got = u8[self.key_start[rows, None] + np.arange(len(key))]
            mask[rows] = (got == np.frombuffer(key, np.uint8)).all(axis=1)
        return mask

    def with_prefix(self, u8, prefix):
        """Boolean mask of the entries whose key starts with `prefix`."""
        mask = (self.key_end - self.key_start) >= len(prefix)
        if len(prefix) and mask.any():
            rows = np.flatnonzero(mask)
            got = u8[self.key_start[rows, None] + np.arange(len(prefix))]
            mask[rows] = (got == np.frombuffer(prefix, np.uint8)).all(axis=1)
        return mask

    def last_per_record(self, mask, num_records):
        """Index of the last entry selected by `mask` in each record, or -1.

        The protobuf parser keeps the last entry of a repeated key.
        """
        last = np.full(num_records, -1, np.int64)
        rows = np.flatnonzero(mask)
        # Entries are sorted by record then position: the last write wins.
        last[self.record[rows]] = rows
        return last


def example_entries(u8, starts, ends):
    """Walks the `Example` records `u8[starts[r]:ends[r]]` in lockstep.

    Args:
        u8: the buffer, a 1-D `uint8` array.
        starts, ends: int64 arrays, each record's payload.

    Returns:
        `(regular, features_start, entries)`: a bool array, True for the
        records in the regular layout (module docstring); where each
        regular record's `Features` payload starts (it ends with the
        record); and their map `Entries`.
    """
    starts = np.asarray(starts, np.int64)
    ends = np.asarray(ends, np.int64)
    count = len(starts)
    regular = np.ones(count, bool)
    nonempty = np.flatnonzero(starts < ends)
    pos = starts.copy()
    if len(nonempty):
        ok = np.ones(len(nonempty), bool)
        begin, stop = _field(u8, starts[nonempty], ends[nonempty], 0x0A, ok)
        ok &= stop == ends[nonempty]  # nothing after the features field
        regular[nonempty[~ok]] = False
        pos[nonempty] = begin
    pos_start = pos.copy()
    found = []
    active = np.flatnonzero(regular & (pos < ends))
    while len(active):
        at, limit = pos[active], ends[active]
        ok = np.ones(len(active), bool)
        entry_start, entry_end = _field(u8, at, limit, 0x0A, ok)
        key_start, key_end = _field(u8, entry_start, entry_end, 0x0A, ok)
        payload_start, payload_end = _field(u8, key_end, entry_end, 0x12, ok)
        ok &= payload_end == entry_end
        regular[active[~ok]] = False
        good = np.flatnonzero(ok)
        found.append((active[good], at[good], entry_end[good],
                      key_start[good], key_end[good], key_end[good],
                      payload_start[good]))
        pos[active[good]] = entry_end[good]
        active = active[good[entry_end[good] < limit[good]]]
    if found:
        columns = [np.concatenate(parts) for parts in zip(*found)]
        order = np.argsort(columns[0], kind="stable")
        columns = [c[order] for c in columns]
        keep = regular[columns[0]]
        columns = [c[keep] for c in columns]
    else:
        columns = [_EMPTY] * 7
    features_start = np.where(starts < ends, pos_start, starts)
    return regular, features_start, Entries(
        **dict(zip(Entries.__slots__, columns)))


def single_bytes_values(u8, starts, ends):
    """Reads `Feature`s `u8[starts[i]:ends[i]]` holding one `bytes_list` value.

    Returns:
        `(ok, value_start, value_end)`: `ok[i]` is True when the feature is
        exactly `bytes_list { value: [v] }` (regular layout), with `v` at
        `u8[value_start[i]:value_end[i]]`.
    """
    ok = np.ones(len(starts), bool)
    list_start, list_end = _field(u8, starts, ends, 0x0A, ok)
    ok &= list_end == ends
    value_start, value_end = _field(u8, list_start, list_end, 0x0A, ok)
    ok &= value_end == list_end
    return ok, value_start, value_end


def packed_float_values(u8, starts, ends):
    """Reads `Feature`s `u8[starts[i]:ends[i]]` holding a packed `float_list`.

    Returns:
        `(ok, value_start, count)`: `ok[i]` is True when the feature is a
        non-empty `float_list` serialized as one packed run of `count[i]`
        little-endian float32 values starting at `value_start[i]`.
    """
    ok = np.ones(len(starts), bool)
    list_start, list_end = _field(u8, starts, ends, 0x12, ok)
    ok &= list_end == ends
    value_start, value_end = _field(u8, list_start, list_end, 0x0A, ok)
    ok &= value_end == list_end
    size = value_end - value_start
    ok &= (size > 0) & (size % 4 == 0)
    return ok, value_start, size // 4


def gather_floats(buffer, starts, width):
    """Rows of `width` little-endian float32 values at byte offsets `starts`.

    Returns a `(len(starts), width)` float32 array (a copy).
    """
    starts = np.asarray(starts, np.int64)
    out = np.empty((len(starts), width), np.float32)
    size = len(buffer)
    for align in range(4):
        rows = np.flatnonzero(starts % 4 == align)
        if not len(rows):
            continue
        words = np.frombuffer(buffer, "<f4", (size - align) // 4, align)
        out[rows] = words[((starts[rows] - align) // 4)[:, None]
                          + np.arange(width)]
    return out


_MAX_BYTES_VALUES = 16  # longer bytes_lists: left to protobuf (valid_examples)


def valid_examples(u8, regular, entries):
    """Which regular records are certainly valid `tf.train.Example`s.

    A sufficient check, in bulk: True for a regular record (module
    docstring) whose keys are ASCII (the parser checks that `map<string,
    ...>` keys are UTF-8) and whose every `Feature` is empty or exactly one
    field among

        bytes_list: [0x0A len [0x0A len bytes]*]  (at most 16 values)
        float_list: [0x12 len]  or  [0x12 len [0x0A len 4k bytes]]
        int64_list: [0x1A len]  or  [0x1A len [0x0A len varint*]]

    with every varint of a packed int64 list whole and at most 10 bytes
    long (a 10th byte of 0 or 1, as serializers write). Each of these the
    protobuf parser accepts; False means "not shown here" (unpacked lists,
    unknown fields, ...), to be parsed by protobuf (`check_examples`).

    Args:
        u8, regular, entries: a buffer and what `example_entries` returned
            for its records.

    Returns:
        A bool array, one per record.
    """
    good = np.ones(len(entries), bool)
    # Keys: ASCII bytes only.
    key_len = entries.key_end - entries.key_start
    high = np.flatnonzero(u8[ranges(entries.key_start, key_len)] >= 0x80)
    if len(high):
        good[np.searchsorted(np.cumsum(key_len), high, side="right")] = False
    # Features: empty, or one list field filling them.
    start, end = entries.payload_start, entries.end
    nonempty = np.flatnonzero(start < end)
    tag = u8[start[nonempty]]
    ok = (tag == 0x0A) | (tag == 0x12) | (tag == 0x1A)
    list_start, list_end = _field(u8, start[nonempty], end[nonempty], tag,
                                  ok)
    ok &= list_end == end[nonempty]
    good[nonempty[~ok]] = False
    keep = np.flatnonzero(ok & (list_start < list_end))
    entry, tag = nonempty[keep], tag[keep]
    list_start, list_end = list_start[keep], list_end[keep]
    # bytes_list: values in lockstep.
    is_bytes = np.flatnonzero(tag == 0x0A)
    active, pos = entry[is_bytes], list_start[is_bytes]
    limit = list_end[is_bytes]
    for _ in range(_MAX_BYTES_VALUES):
        ok = np.ones(len(active), bool)
        _, pos = _field(u8, pos, limit, 0x0A, ok)
        good[active[~ok]] = False
        more = ok & (pos < limit)
        active, pos, limit = active[more], pos[more], limit[more]
    good[active] = False
    # float_list and int64_list: one packed field filling the list.
    packed = np.flatnonzero((tag == 0x12) | (tag == 0x1A))
    ok = np.ones(len(packed), bool)
    value_start, value_end = _field(u8, list_start[packed],
                                    list_end[packed], 0x0A, ok)
    ok &= value_end == list_end[packed]
    ok &= (tag[packed] == 0x1A) | ((value_end - value_start) % 4 == 0)
    good[entry[packed[~ok]]] = False
    ints = ok & (tag[packed] == 0x1A) & (value_start < value_end)
    good[entry[packed[ints]][~_whole_varints(
        u8, value_start[ints], value_end[ints])]] = False
    valid = regular.copy()
    valid[entries.record[~good]] = False
    return valid


def _whole_varints(u8, starts, ends, batch_bytes=1 << 22):
    """Whether `u8[s:e]` is whole varints of <= 10 bytes, for each run.

    Runs are gathered about `batch_bytes` at a time (an int64 index per
    byte). A run that does not end a varint can make the next one look
    bad too, never good.
    """
    ok = u8[ends - 1] < 0x80  # the last one ends with the run
    size = ends - starts
    end_of = np.cumsum(size)  # where each run ends among all runs' bytes
    first = 0
    while first < len(size):
        before = end_of[first] - size[first]  # the earlier batches' bytes
        stop = max(int(np.searchsorted(end_of, before + batch_bytes,
                                       side="right")), first + 1)
        data = u8[ranges(starts[first:stop], size[first:stop])]
        stops = np.flatnonzero(data < 0x80)
        length = np.diff(stops, prepend=-1)
        bad = stops[(length > 10) | ((length == 10) & (data[stops] > 1))]
        if len(bad):
            ok[first + np.searchsorted(end_of[first:stop] - before, bad,
                                       side="right")] = False
        first = stop
    return ok


def ranges(starts, counts):
    """`concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`."""
    first = np.cumsum(counts) - counts
    return np.repeat(starts - first, counts) + np.arange(int(counts.sum()))


def check_examples(chunk, path, valid=None):
    """Parses records of a `tfrecord.RecordChunk` with protobuf.

    Args:
        chunk: the records.
        path: their file, for the message.
        valid: None, or a bool array: True for records known to be valid
            (`valid_examples`), which are not parsed.

    Raises:
        ValueError: naming the first record that is not a serialized
            `tf.train.Example`.
    """
    # pylint: disable=import-outside-toplevel
    from google.protobuf import message
    from neural_structured_learning.tools import example_proto
    parse = example_proto.Example.FromString
    view = memoryview(chunk.buffer)
    rows = (np.arange(len(chunk)) if valid is None else
            np.flatnonzero(~np.asarray(valid, bool)))
    starts = chunk.data_starts[rows].tolist()
    ends = (chunk.data_starts + chunk.lengths)[rows].tolist()
    try:
        # map: C-level iteration; a for loop costs as much as the parsing.
        collections.deque(map(parse, map(view.__getitem__, map(
            slice, starts, ends))), maxlen=0)
        return
    except message.DecodeError:
        pass
    index = 0
    try:
        for row, start, end in zip(rows.tolist(), starts, ends):
            index = row
            parse(view[start:end])
    except message.DecodeError as e:
        raise ValueError(
            f"The record {chunk.first_index + index} at byte offset "
            f"{int(chunk.offsets[index])} of {path!r} is not a serialized "
            f"tf.train.Example ({e}).") from None


# ------------------------------------------------------------- writing --
def varint(value):
    """The varint encoding of a non-negative int (< 2**64) as bytes."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_sizes(values):
    """Number of bytes of the varint encoding of each value (int64 array)."""
    sizes = np.ones(len(values), np.int64)
    for bits in range(7, 63, 7):
        sizes += values >= (1 << bits)
    return sizes


def field(tag, payload):
    """A length-delimited field: `tag varint(len) payload`."""
    return bytes((tag,)) + varint(len(payload)) + payload


def map_entry(key, feature):
    """A serialized `Features` map entry (field 1) of `key` -> `feature`.

    Args:
        key: the key, UTF-8 bytes.
        feature: a serialized `Feature`.
    """
    return field(0x0A, field(0x0A, key) + field(0x12, feature))


def int64_feature(values):
    """A serialized `Feature` with a packed `int64_list` of `values`."""
    packed = b"".join(varint(v & 0xFFFFFFFFFFFFFFFF) for v in values)
    return field(0x1A, field(0x0A, packed))


def float_feature(values):
    """A serialized `Feature` with a packed `float_list` (float32 values)."""
    packed = np.asarray(values, np.float64)
    with np.errstate(over="ignore"):
        packed = packed.astype("<f4").tobytes()
    return field(0x12, field(0x0A, packed))


def example(features_payload):
    """A serialized `Example` whose `Features` payload is given."""
    return field(0x0A, features_payload)


def float_entry_rows(key, weights):
    """Map entries `key -> float_list [w]`, one row per weight.

    Returns:
        `(rows, key_at)`: a `(len(weights), size)` uint8 array, each row one
        serialized entry (callers may patch the key bytes, which start at
        column `key_at`, keeping their length), with the float32 values
        rounded from `weights` as protobuf does.
    """
    weights = np.asarray(weights, np.float64)
    template = map_entry(key, float_feature([0.0]))
    rows = np.empty((len(weights), len(template)), np.uint8)
    rows[:] = np.frombuffer(template, np.uint8)
    with np.errstate(over="ignore"):
        rows[:, len(template) - 4:] = weights.astype("<f4").view(
            np.uint8).reshape(-1, 4)
    return rows, template.index(key)
