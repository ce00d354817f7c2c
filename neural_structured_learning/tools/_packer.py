"""Merging neighbours' features into labeled examples (`nsl.tools.pack_nbrs`).

1. Scan every record once in bulk (`tfrecord.iter_record_chunks`: CRCs
   checked, every record parsed once by protobuf to validate it) and keep,
   per distinct id, where its last record lies. Ids come from the records'
   bytes (`_wire`). Stream the graph TSV, keeping edges between known ids
   as int/float arrays, and pick each labeled example's neighbours with
   NumPy sorts.
2. For each labeled example, in file order, write the merged example.

When the example files total at most `_IN_MEMORY_BYTES` (default 1 GiB),
their bytes stay in memory after the scan and merged examples are written
directly in `tf.train.Example` wire format: the seed's serialized map
entries, then `NL_num_nbrs`, then for neighbour `i` its weight entry and
its own entries with each key renamed `NL_nbr_{i}_{key}` (values copied
byte for byte). The protobuf parser keeps the last entry of a repeated
key, which gives exactly the message NSL 1.4 builds with `CopyFrom`.
Records in another layout, or seeds that already have `NL_*` features
(where 1.4 appends to the existing lists), are merged through protobuf
messages instead, as for larger inputs, which are read back by offset
(`os.pread`) so that memory does not depend on the size of the examples.
docs/tools.md gives measured peaks and times.
"""

import logging
import numbers
import os
import itertools
import operator
import time

import numpy as np

from neural_structured_learning._core import naming
from neural_structured_learning._core import progress as _progress
from neural_structured_learning._core import validation as _validation
from neural_structured_learning.tools import _fileio
from neural_structured_learning.tools import graph_utils

_logger = logging.getLogger(__name__)


_IN_MEMORY_BYTES = 1 << 30  # example files up to this size stay in memory
_COLUMNS = ("file", "offset", "length", "record", "chunk", "position")


class _ExampleIndex:
    """Where the last record of each example id lies in the input files.

    Per row (distinct id, numbered in first-seen order): `ids[row]`, and
    NumPy columns `file` (index into `files`), `offset` (of the record's
    frame), `length` (of its payload), `record` (index in its file),
    `labeled` (int8); `seeds` lists the labeled rows in first-seen order.
    With `keep_records`, the scanned chunks stay in memory (`chunks`, with
    their `_wire` layout in `layouts`) and `chunk`/`position` locate each
    row's record in them.
    """

    def __init__(self, id_feature_name, keep_records=False):
        self.id_feature_name = id_feature_name
        self.keep_records = keep_records
        self.files = []
        self.row_of = {}  # id -> row
        self.ids = []  # row -> id
        self.chunks = []
        self.layouts = []
        self._size = 0
        self._columns = {name: np.zeros(0, np.int64) for name in _COLUMNS}
        self._labeled = np.zeros(0, np.int8)
        self._seeds = []

    def __getattr__(self, name):
        columns = self.__dict__.get("_columns", {})
        if name in columns:
            return columns[name][:self._size]
        raise AttributeError(name)

    @property
    def labeled(self):
        return self._labeled[:self._size]

    @property
    def seeds(self):
        return np.concatenate(self._seeds) if self._seeds else np.zeros(
            0, np.int64)

    def _grow(self, size):
        if size > len(self._labeled):
            capacity = max(size, 2 * len(self._labeled), 1024)
            for name, column in self._columns.items():
                grown = np.zeros(capacity, np.int64)
                grown[:self._size] = column[:self._size]
                self._columns[name] = grown
            grown = np.zeros(capacity, np.int8)
            grown[:self._size] = self._labeled[:self._size]
            self._labeled = grown
        self._size = size

    def scan(self, path, labeled, bar):
        """Records every example of `path`; returns the number of records."""
        # pylint: disable=import-outside-toplevel
        from neural_structured_learning.tools import tfrecord
        file_index = len(self.files)
        self.files.append(path)
        count = 0
        for chunk in tfrecord.iter_record_chunks(path):
            self._add_chunk(chunk, path, file_index, labeled)
            count += len(chunk)
            bar.update(len(chunk))
        self.ids = list(self.row_of)
        return count

    def _add_chunk(self, chunk, path, file_index, labeled):
        # pylint: disable=import-outside-toplevel
        from neural_structured_learning.tools import _wire
        _wire.check_examples(chunk, path)
        layout = _ChunkLayout(chunk)
        node_ids = self._chunk_ids(chunk, layout, path)
        row_of = self.row_of
        # New ids get the next rows, in first-seen order (C loops: map,
        # dict.fromkeys; a Python loop per record costs more).
        fresh = dict.fromkeys(node_ids)
        if row_of:
            fresh = [i for i in fresh if i not in row_of]
        row_of.update(zip(fresh, range(len(row_of),
                                       len(row_of) + len(fresh))))
        rows = np.fromiter(map(row_of.__getitem__, node_ids), np.int64,
                           len(node_ids))
        self._grow(len(row_of))
        count = len(rows)
        # The last record of an id gives its content, the first its place.
        unique_rows, reversed_first = np.unique(rows[::-1], return_index=True)
        last = count - 1 - reversed_first
        if labeled:
            _, first = np.unique(rows, return_index=True)
            first = np.sort(first)
            new_seeds = rows[first][self._labeled[rows[first]] == 0]
            self._labeled[new_seeds] = 1
            self._seeds.append(new_seeds)
        else:
            keep = self._labeled[unique_rows] == 0
            unique_rows, last = unique_rows[keep], last[keep]
        columns = self._columns
        columns["file"][unique_rows] = file_index
        columns["offset"][unique_rows] = chunk.offsets[last]
        columns["length"][unique_rows] = chunk.lengths[last]
        columns["record"][unique_rows] = chunk.first_index + last
        if self.keep_records:
            columns["chunk"][unique_rows] = len(self.chunks)
            columns["position"][unique_rows] = last
            layout.compact()
            self.chunks.append(chunk)
            self.layouts.append(layout)

    def _chunk_ids(self, chunk, layout, path):
        """The id of each record of a chunk (checked as `_id_of` does)."""
        # pylint: disable=import-outside-toplevel
        from neural_structured_learning.tools import _wire
        from neural_structured_learning.tools import example_proto
        u8, entries = layout.u8, layout.entries
        count = len(chunk)
        id_entry = entries.last_per_record(
            entries.with_key(u8, self.id_feature_name.encode("utf-8")), count)
        fast = layout.regular & (id_entry >= 0)
        rows = np.flatnonzero(fast)
        entry = id_entry[rows]
        ok, start, end = _wire.single_bytes_values(
            u8, entries.payload_start[entry], entries.end[entry])
        fast[rows[~ok]] = False
        starts = np.zeros(count, np.int64)
        ends = np.zeros(count, np.int64)
        starts[rows], ends[rows] = start, end
        buffer = chunk.buffer
        try:
            # Empty for the records left to `_id_of`.
            node_ids = list(map(bytes.decode, map(buffer.__getitem__, map(
                slice, starts.tolist(), ends.tolist()))))
        except UnicodeDecodeError:
            fast[:] = False  # `_id_of` names the record
            node_ids = [None] * count
        parse = example_proto.Example.FromString
        for i in np.flatnonzero(~fast).tolist():
            node_ids[i] = self._id_of(parse(chunk.data(i)), path,
                                      chunk.first_index + i,
                                      int(chunk.offsets[i]))
        return node_ids

    def record_data(self, row):
        """The serialized example of `row` (needs `keep_records`)."""
        return self.chunks[self.chunk[row]].data(self.position[row])

    def _id_of(self, example, path, index, offset):
        return example_id(example, self.id_feature_name,
                          f"{path!r}, record {index} at byte offset {offset}")


class _ChunkLayout:
    """The `_wire` layout of a chunk's records.

    `entries` (all columns) lives until `compact()`, which keeps what the
    merge needs, as int32 where the buffer allows: per entry `key_start`,
    `key_end` (where the value field starts) and `end`; per record
    `first_entry`, `regular`, `features_start`, `nl_keys`.
    """

    __slots__ = ("u8", "regular", "features_start", "entries", "first_entry",
                 "nl_keys", "key_start", "key_end", "end")

    def __init__(self, chunk):
        # pylint: disable=import-outside-toplevel
        from neural_structured_learning.tools import _wire
        self.u8 = np.frombuffer(chunk.buffer, np.uint8)
        starts = chunk.data_starts
        self.regular, self.features_start, self.entries = (
            _wire.example_entries(self.u8, starts, starts + chunk.lengths))
        entries = self.entries
        self.first_entry = np.searchsorted(entries.record,
                                           np.arange(len(chunk) + 1))
        # Seeds with NL_* features go through protobuf (1.4 appends to
        # NL_num_nbrs and NL_nbr_<i>_weight when they exist).
        self.nl_keys = np.zeros(len(chunk), bool)
        self.nl_keys[entries.record[entries.with_prefix(self.u8, b"NL_")]] = (
            True)
        self.key_start = self.key_end = self.end = None

    def compact(self):
        dtype = np.int32 if len(self.u8) < (1 << 31) else np.int64
        entries, self.entries = self.entries, None
        self.key_start = entries.key_start.astype(dtype)
        self.key_end = entries.key_end.astype(dtype)
        self.end = entries.end.astype(dtype)
        self.first_entry = self.first_entry.astype(dtype)
        self.features_start = self.features_start.astype(dtype)


def example_id(example, id_feature_name, where):
    """The id of a parsed `tf.train.Example` (one UTF-8 bytes value).

    Raises:
        ValueError: naming `where` (the file and record), when the id
            feature is missing, not a single bytes value, or not UTF-8.
    """
    feature = example.features.feature.get(id_feature_name)
    if feature is None:
        raise ValueError(
            f"The example in {where} has no feature {id_feature_name!r} (its "
            f"features: {sorted(example.features.feature)}); every example "
            "needs an id.")
    kind = feature.WhichOneof("kind")
    if kind != "bytes_list" or len(feature.bytes_list.value) != 1:
        values = len(getattr(feature, kind).value) if kind else 0
        raise ValueError(
            f"The id feature {id_feature_name!r} of the example in {where} is "
            f"a {kind or 'feature with no value'} with {values} value(s); "
            "expected a bytes_list with one value.")
    raw = feature.bytes_list.value[0]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"The id {raw!r} of the example in {where} is not "
                         "UTF-8.") from None


def check_arguments(max_nbrs, unlabeled_label, label_feature_name,
                    id_feature_name):
    """Checks `pack_nbrs`'s options (also the Beam pipeline's).

    Returns:
        `unlabeled_label` as an `int`, or None.
    """
    _validation.check_int("max_nbrs", max_nbrs, 0, allow_none=True)
    if unlabeled_label is not None:
        if isinstance(unlabeled_label, bool) or not isinstance(
                unlabeled_label, numbers.Integral):
            raise ValueError(
                "`unlabeled_label` must be an integer or None. Received: "
                f"unlabeled_label={unlabeled_label!r}")
        if not isinstance(label_feature_name, str) or not label_feature_name:
            raise ValueError(
                "`label_feature_name` must be a non-empty string. Received: "
                f"label_feature_name={label_feature_name!r}")
        unlabeled_label = int(unlabeled_label)
    if not isinstance(id_feature_name, str) or not id_feature_name:
        raise ValueError("`id_feature_name` must be a non-empty string. "
                         f"Received: id_feature_name={id_feature_name!r}")
    return unlabeled_label


def pack_nbrs(labeled_examples_path, unlabeled_examples_path, graph_path,
              output_training_data_path, add_undirected_edges=False,
              max_nbrs=None, id_feature_name="id", *, progress=None,
              unlabeled_label=None, label_feature_name="label"):
    """Merges each labeled example with its graph neighbours' features.

    For each labeled example `s` (in input order; for a repeated id, the
    position of its first record and the content of its last, as NSL 1.4),
    the candidate neighbours are the targets `t` of the graph edges `s -> t`
    that have an example (labeled or unlabeled; a labeled one wins when an id
    is in both). They are ranked by weight descending, ties going to the
    lexicographically larger id (Python `str` order, so "9" before "10"),
    and the first `K = min(max_nbrs, #candidates)` are merged into a copy of
    `s`:

    * `NL_num_nbrs`: int64_list `[K]`;
    * `NL_nbr_{i}_weight`: float_list `[w_i]` (float32), for `i < K`;
    * `NL_nbr_{i}_{f}`: a copy of every feature `f` of neighbour `i`,
      including its id and label.

    Duplicate edges keep their largest weight; with `add_undirected_edges`
    every edge `s -> t` also counts as `t -> s` (weight `max(w_st, w_ts)`).
    Self-loops are kept, as in 1.4 (an example can be its own neighbour).
    Only labeled examples are written, including those with no neighbour
    (`NL_num_nbrs = [0]`); unlabeled examples serve only as neighbours.
    The output is NSL 1.4's, feature for feature; the file is written
    atomically.

    New in this version: with `unlabeled_label` (e.g. -1), the unlabeled
    examples are written too, after the labeled ones (in input order), with
    their neighbours merged the same way and `label_feature_name` set to
    `int64_list [unlabeled_label]`: batches then mix labeled and unlabeled
    nodes, for a model that trains its labeled loss on labeled rows only
    and its graph loss on every row (`GraphRegularization(...,
    unlabeled_label=-1)`).

    Args:
        labeled_examples_path: TFRecord file(s) of labeled `tf.train.Example`:
            a name, a glob, or a list of them.
        unlabeled_examples_path: TFRecord file(s) of unlabeled examples, or
            `""` / `None` for none.
        graph_path: graph TSV file(s), `source<TAB>target[<TAB>weight]`.
        output_training_data_path: the TFRecord file to write.
        add_undirected_edges: treat every edge as bidirectional.
        max_nbrs: most neighbours per example, or `None` for all.
        id_feature_name: the `bytes_list` feature holding each example's id.
        progress: show progress bars; `None` shows them on a terminal.
        unlabeled_label: None (NSL 1.4), or an integer: write the unlabeled
            examples too, labeled with it (see above).
        label_feature_name: the label feature set on unlabeled examples.

    Raises:
        ValueError: for invalid arguments, an example without a single-value
            `bytes_list` id, a malformed graph line, or no labeled example.
        FileNotFoundError: if an input file or the output directory does
            not exist (the output is checked before any work).
        PermissionError: if the output directory is not writable.
        TFRecordError: for a corrupt TFRecord input.
    """
    # pylint: disable=import-outside-toplevel
    from neural_structured_learning.tools import tfrecord
    unlabeled_label = check_arguments(max_nbrs, unlabeled_label,
                                      label_feature_name, id_feature_name)
    _fileio.check_output_path(output_training_data_path,
                              what="`output_training_data_path`")
    start = time.time()
    labeled_files = _fileio.expand_paths(labeled_examples_path,
                                         what="`labeled_examples_path`")
    unlabeled_files = (_fileio.expand_paths(
        unlabeled_examples_path, what="`unlabeled_examples_path`")
                       if unlabeled_examples_path else [])
    graph_files = _fileio.expand_paths(graph_path, what="`graph_path`")

    example_bytes = sum(os.path.getsize(path)
                        for path in unlabeled_files + labeled_files)
    index = _ExampleIndex(id_feature_name,
                          keep_records=example_bytes <= _IN_MEMORY_BYTES)
    with _progress.progress_bar(desc="Indexing examples", unit="example",
                                enabled=progress) as bar:
        for path in unlabeled_files:
            index.scan(path, False, bar)
        for path in labeled_files:
            index.scan(path, True, bar)
    if not len(index.seeds):
        raise ValueError(f"No labeled examples found in {labeled_files!r}.")
    _logger.info("Indexed %d distinct examples, %d labeled (%.1f s).",
                 len(index.ids), len(index.seeds), time.time() - start)

    labeled = index.labeled.astype(bool)
    seeds = index.seeds.tolist()
    if unlabeled_label is not None:
        seeds += np.flatnonzero(~labeled).tolist()
    is_seed = np.zeros(len(index.ids), bool)
    is_seed[seeds] = True
    indptr, nbrs, weights = _choose_neighbors(
        index, graph_files, add_undirected_edges, max_nbrs, is_seed)
    label = (label_feature_name, unlabeled_label)
    with _Merger(index) as merger, tfrecord.TFRecordWriter(
            output_training_data_path) as writer, _progress.progress_bar(
                desc="Packing", unit="example", total=len(seeds),
                enabled=progress) as bar:
        if index.keep_records:
            _WireMerger(index, indptr, nbrs, weights, label,
                        merger).write(seeds, labeled, writer, bar)
        else:
            for seed in seeds:
                begin, end = indptr[seed], indptr[seed + 1]
                writer.write(merger.merge(
                    seed, nbrs[begin:end].tolist(),
                    weights[begin:end].tolist(),
                    None if labeled[seed] else label))
                bar.update(1)
    degrees = np.bincount(np.diff(indptr)[seeds]) if seeds else []
    _logger.info("Wrote %d merged examples to %s (%.1f s). Out-degree "
                 "histogram: %s", len(seeds), output_training_data_path,
                 time.time() - start, [(k, int(c)) for k, c in
                                       enumerate(degrees) if c])


class _Merger:
    """Merges neighbours into seeds through protobuf messages (1.4's way).

    Records come from memory when the index keeps them, else they are read
    back by offset (`os.pread`, CRC checked again).
    """

    def __init__(self, index):
        # pylint: disable=import-outside-toplevel
        from neural_structured_learning.tools import example_proto
        from neural_structured_learning.tools import tfrecord
        self._index = index
        self._parse = example_proto.Example.FromString
        self._read_record = tfrecord.read_record_at
        self._fds = []

    def __enter__(self):
        if not self._index.keep_records:
            for path in self._index.files:
                self._fds.append(os.open(path, os.O_RDONLY))
        return self

    def __exit__(self, *exc_info):
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def _example(self, row):
        index = self._index
        if index.keep_records:
            return self._parse(index.record_data(row))
        file_index = index.file[row]
        return self._parse(self._read_record(
            self._fds[file_index], int(index.offset[row]),
            int(index.length[row]), path=index.files[file_index],
            index=int(index.record[row])))

    def merge(self, seed, nbrs, weights, label=None):
        """Returns the serialized seed example with its neighbours merged.

        `label`: optional `(feature name, int)` set on the seed (unlabeled
        seeds), before its neighbours are merged.
        """
        example = self._example
        merged = example(seed)
        features = merged.features.feature
        if label is not None:
            name, value = label
            features[name].Clear()
            features[name].int64_list.value.append(value)
        features[naming.NUM_NBRS_FEATURE].int64_list.value.append(len(nbrs))
        for i, (nbr, weight) in enumerate(zip(nbrs, weights)):
            prefix = f"{naming.NBR_PREFIX}{i}_"
            weight_name = f"{naming.NBR_PREFIX}{i}{naming.WEIGHT_SUFFIX}"
            features[weight_name].float_list.value.append(weight)
            for name, value in example(nbr).features.feature.items():
                features[prefix + name].CopyFrom(value)
        return merged.SerializeToString()


class _WireMerger:
    """Writes merged examples directly in wire format (module docstring).

    Neighbour `i < 10` of a seed contributes its template: its map entries
    renamed for neighbour 0, built once per example used as a neighbour
    (`_build_templates`), whose prefix digits are then overwritten with
    `i` in the output. Later neighbours (`i >= 10`, when `max_nbrs`
    allows) are renamed one entry at a time. Examples are assembled by
    blocks (`_block`) and framed together (`TFRecordWriter.write_block`).
    """

    def __init__(self, index, indptr, nbrs, weights, label, slow):
        # pylint: disable=import-outside-toplevel
        from neural_structured_learning.tools import _wire
        self._wire = _wire
        self._index = index
        self._slow = slow
        self._nbrs = nbrs.tolist()
        self._weights = weights
        num_rows = len(index.ids)
        chunk, position = index.chunk, index.position
        regular = np.zeros(num_rows, bool)
        nl_keys = np.zeros(num_rows, bool)
        features_start = np.zeros(num_rows, np.int64)
        features_end = np.zeros(num_rows, np.int64)
        for c, layout in enumerate(index.layouts):
            rows = np.flatnonzero(chunk == c)
            at = position[rows]
            regular[rows] = layout.regular[at]
            nl_keys[rows] = layout.nl_keys[at]
            features_start[rows] = layout.features_start[at]
            record = index.chunks[c]
            features_end[rows] = record.data_starts[at] + record.lengths[at]
        self._buffers = [record.buffer for record in index.chunks]
        slot_seed = np.repeat(np.arange(num_rows), np.diff(indptr))
        bad_slots = np.bincount(slot_seed[~regular[nbrs]],
                                minlength=num_rows)
        self._fast = regular & ~nl_keys & (bad_slots == 0)
        name, value = label
        self._label = None if value is None else label
        self._label_fast = (value is None or not name.startswith("NL_"))
        self._label_entry = (None if value is None else _wire.map_entry(
            name.encode("utf-8"), _wire.int64_feature([value])))
        # Weight entries of every slot whose position is < 10, in one blob.
        slot_position = np.arange(len(nbrs)) - np.asarray(indptr)[slot_seed]
        rows, key_at = _wire.float_entry_rows(
            f"{naming.NBR_PREFIX}0{naming.WEIGHT_SUFFIX}".encode(), weights)
        digit_at = key_at + len(naming.NBR_PREFIX)
        rows[:, digit_at] = ord("0") + np.minimum(slot_position, 9)
        self._weight_size = rows.shape[1]
        self._weight_blob = rows.tobytes()
        self._templates = np.full(num_rows, None, object)
        self._template_sizes = np.zeros(num_rows, np.int64)
        self._digit_first = np.zeros(num_rows, np.int64)
        self._digit_count = np.zeros(num_rows, np.int64)
        self._digit_parts = []
        self._num_digits = 0
        used = np.unique(nbrs)
        self._build_templates(used[regular[used]])
        self._digit_offsets = (np.concatenate(self._digit_parts)
                               if self._digit_parts else np.zeros(0, np.int32))
        # NumPy views of the above for the block writer.
        self._indptr_array = np.asarray(indptr, np.int64)
        self._nbrs_array = np.asarray(nbrs, np.int64)
        self._view_objects = _objects([memoryview(b) for b in self._buffers])
        self._chunk_of = np.asarray(chunk, np.int64)
        self._features_start = features_start
        self._features_end = features_end
        degrees = np.diff(self._indptr_array)
        self._num_entries = _objects([
            _wire.map_entry(naming.NUM_NBRS_FEATURE.encode(),
                            _wire.int64_feature([k]))
            for k in range(int(degrees.max()) + 1 if len(degrees) else 1)])
        self._num_sizes = np.fromiter(map(len, self._num_entries), np.int64,
                                      len(self._num_entries))

    def _build_templates(self, rows):
        """Fills `_templates[row]` for the examples `rows`.

        The template of an example is its map entries renamed for
        neighbour 0 (`NL_nbr_0_{key}`); for neighbour `i < 10` the digit of
        each prefix is overwritten in the output, which changes no length.
        `_digit_offsets[_digit_first[row]:][:_digit_count[row]]` are the
        digits' offsets in the template.
        """
        wire, index = self._wire, self._index
        prefix0 = f"{naming.NBR_PREFIX}0_".encode()
        chunk_of = index.chunk[rows]
        for c in np.unique(chunk_of).tolist():
            mine = rows[chunk_of == c]
            at = index.position[mine]
            layout = index.layouts[c]
            buffer = index.chunks[c].buffer
            first = layout.first_entry[at].astype(np.int64)
            counts = layout.first_entry[at + 1] - first
            total = int(counts.sum())
            starts_out = np.cumsum(counts) - counts
            entry = (np.repeat(first - starts_out, counts)
                     + np.arange(total)) if total else np.zeros(0, np.int64)
            key_start = layout.key_start[entry].astype(np.int64)
            key_end = layout.key_end[entry].astype(np.int64)
            end = layout.end[entry].astype(np.int64)
            key_len = key_end - key_start + len(prefix0)
            body = 1 + wire.varint_sizes(key_len) + key_len + (end - key_end)
            heads, head_end = _entry_heads(body, key_len, prefix0)
            head_len = np.diff(np.r_[0, head_end])
            entry_size = head_len + end - key_start
            entry_at = np.cumsum(entry_size) - entry_size
            # Each entry: its head, then its key and value field from the
            # buffer, joined into one pool (map: no Python loop per piece).
            sources = itertools.cycle((heads, buffer))
            cuts = np.empty((2 * total, 2), np.int64)
            cuts[0::2, 0], cuts[0::2, 1] = head_end - head_len, head_end
            cuts[1::2, 0], cuts[1::2, 1] = key_start, end
            pool = b"".join(map(operator.getitem, sources, map(
                slice, cuts[:, 0].tolist(), cuts[:, 1].tolist())))
            record_size = np.bincount(
                np.repeat(np.arange(len(mine)), counts),
                weights=entry_size, minlength=len(mine)).astype(np.int64)
            record_stop = np.cumsum(record_size)
            self._templates[mine] = np.fromiter(map(pool.__getitem__, map(
                slice, (record_stop - record_size).tolist(),
                record_stop.tolist())), object, len(mine))
            self._template_sizes[mine] = record_size
            # Where the digit of each entry's prefix lies in its template.
            record_first = np.repeat(record_stop - record_size, counts)
            digits = (entry_at + head_len - 2 - record_first).astype(np.int32)
            self._digit_first[mine] = self._num_digits + starts_out
            self._digit_count[mine] = counts
            self._digit_parts.append(digits)
            self._num_digits += total

    def _renamed(self, row, i):
        """The entries of example `row` renamed for neighbour `i` (slow)."""
        wire, index = self._wire, self._index
        layout = index.layouts[index.chunk[row]]
        buffer = index.chunks[index.chunk[row]].buffer
        at = index.position[row]
        prefix = f"{naming.NBR_PREFIX}{i}_".encode()
        out = []
        for e in range(layout.first_entry[at], layout.first_entry[at + 1]):
            key_end = int(layout.key_end[e])
            key = prefix + buffer[int(layout.key_start[e]):key_end]
            out.append(wire.field(0x0A, wire.field(0x0A, key) + buffer[
                key_end:int(layout.end[e])]))
        return b"".join(out)

    def write(self, seeds, labeled, writer, bar):
        """Writes the merged example of each seed, in order."""
        seeds = np.asarray(seeds, np.int64)
        labeled = np.asarray(labeled, bool)
        fast = self._fast.copy()
        if not self._label_fast:
            fast &= labeled
        for start in range(0, len(seeds), _BLOCK_SEEDS):
            block = seeds[start:start + _BLOCK_SEEDS]
            writer.write_block(*self._block(block, fast, labeled))
            bar.update(len(block))

    def _block(self, block, fast, labeled):
        """`(data, lengths)`: the merged examples of `block`, back to back.

        All seeds' pieces go into one object array, filled with NumPy
        indexing and `map` (C loops) rather than a Python loop per seed.
        """
        wire = self._wire
        indptr = self._indptr_array
        begin, end = indptr[block], indptr[block + 1]
        count = end - begin
        short = np.minimum(count, 10)
        is_fast = fast[block]
        has_long = is_fast & (count > 10)
        # Fast seeds: head, features, label, NL_num_nbrs, weights, one
        # piece per neighbour < 10, one for the others; else one piece.
        num_pieces = np.where(is_fast, 5 + short + has_long, 1)
        first = np.cumsum(num_pieces) - num_pieces
        flat = np.empty(int(num_pieces.sum()), object)
        lengths = np.zeros(len(block), np.int64)
        for k in np.flatnonzero(~is_fast).tolist():
            seed, b, e = int(block[k]), int(begin[k]), int(end[k])
            data = self._slow.merge(seed, self._nbrs[b:e],
                                    self._weights[b:e].tolist(),
                                    None if labeled[seed] else self._label)
            flat[first[k]] = data
            lengths[k] = len(data)
        rows = np.flatnonzero(is_fast)
        if not len(rows):
            return b"".join(flat.tolist()), lengths
        seeds, at, b, n = block[rows], first[rows], begin[rows], short[rows]
        size = self._weight_size
        feature_start = self._features_start[seeds]
        feature_end = self._features_end[seeds]
        flat[at + 1] = np.fromiter(map(
            operator.getitem, self._view_objects[self._chunk_of[seeds]],
            map(slice, feature_start.tolist(), feature_end.tolist())),
                                   object, len(rows))
        unlabeled = ~labeled[seeds]
        labels = np.full(len(rows), b"", object)
        if unlabeled.any():
            labels[unlabeled] = self._label_entry
        flat[at + 2] = labels
        flat[at + 3] = self._num_entries[count[rows]]
        weight_start = (size * b).tolist()
        flat[at + 4] = np.fromiter(map(self._weight_blob.__getitem__, map(
            slice, weight_start, (size * (b + n)).tolist())), object,
                                   len(rows))
        # Neighbours < 10: their template, with the index in the prefix.
        total = int(n.sum())
        slot_first = np.cumsum(n) - n
        owner = np.repeat(np.arange(len(rows)), n)
        position = np.arange(total) - slot_first[owner]
        slot = b[owner] + position
        nbr = self._nbrs_array[slot]
        slot_piece = at[owner] + 5 + position
        flat[slot_piece] = self._templates[nbr]
        slot_bytes = np.bincount(owner, weights=self._template_sizes[nbr],
                                 minlength=len(rows))
        long_bytes = np.zeros(len(rows), np.int64)
        for k in np.flatnonzero(has_long[rows]).tolist():
            piece = b"".join(self._long_slot(int(b[k]) + i, i)
                             for i in range(10, int(count[rows[k]])))
            flat[at[k] + 15] = piece
            long_bytes[k] = len(piece)
        features = (feature_end - feature_start + unlabeled * len(
            self._label_entry or b"") + self._num_sizes[count[rows]]
                    + size * n + slot_bytes.astype(np.int64) + long_bytes)
        heads, head_ends = _example_heads(features)
        flat[at] = np.fromiter(map(heads.__getitem__, map(
            slice, (head_ends - (1 + wire.varint_sizes(features))).tolist(),
            head_ends.tolist())), object, len(rows))
        lengths[rows] = 1 + wire.varint_sizes(features) + features
        data = bytearray().join(flat.tolist())
        # The templates say neighbour 0: write each slot's index digit.
        piece_size = np.fromiter(map(len, flat), np.int64, len(flat))
        piece_start = np.cumsum(piece_size) - piece_size
        per_slot = self._digit_count[nbr]
        digit = (np.repeat(piece_start[slot_piece], per_slot)
                 + self._digit_offsets[_ranges(self._digit_first[nbr],
                                               per_slot)])
        np.frombuffer(data, np.uint8)[digit] = (
            ord("0") + np.repeat(position, per_slot))
        return data, lengths

    def _long_slot(self, slot, i):
        wire = self._wire
        key = f"{naming.NBR_PREFIX}{i}{naming.WEIGHT_SUFFIX}".encode()
        weight = wire.map_entry(key, wire.float_feature(
            [self._weights[slot]]))
        return weight + self._renamed(self._nbrs[slot], i)


_BLOCK_SEEDS = 512  # merged examples assembled at a time


def _objects(items):
    """A 1-D object array of `items` (bytes stay bytes objects)."""
    return np.fromiter(items, object, len(items))


def _ranges(starts, counts):
    """`concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`."""
    total = int(counts.sum())
    first = np.cumsum(counts) - counts
    return np.repeat(starts - first, counts) + np.arange(total)


def _example_heads(sizes):
    """`0x0A varint(size)` for each size: `(blob, ends)` as `_entry_heads`."""
    count = len(sizes)
    size_bytes, size_len = _varint_rows(sizes)
    table = np.concatenate([np.full((count, 1), 0x0A, np.uint8), size_bytes],
                           axis=1)
    used = np.concatenate([np.ones((count, 1), bool),
                           np.arange(5) < size_len[:, None]], axis=1)
    return table[used].tobytes(), np.cumsum(used.sum(axis=1))


def _entry_heads(body, key_len, prefix):
    """`0x0A varint(body) 0x0A varint(key_len) prefix` for each entry.

    Returns `(blob, ends)`: the heads concatenated (`bytes`) and where each
    ends in the blob.
    """
    count = len(body)
    prefix = np.frombuffer(prefix, np.uint8)
    body_bytes, body_size = _varint_rows(body)
    key_bytes, key_size = _varint_rows(key_len)
    tag = np.full((count, 1), 0x0A, np.uint8)
    every = np.ones((count, 1), bool)
    table = np.concatenate([tag, body_bytes, tag, key_bytes,
                            np.broadcast_to(prefix, (count, len(prefix)))],
                           axis=1)
    used = np.concatenate([every, np.arange(5) < body_size[:, None], every,
                           np.arange(5) < key_size[:, None],
                           np.ones((count, len(prefix)), bool)], axis=1)
    return table[used].tobytes(), np.cumsum(used.sum(axis=1))


def _varint_rows(values):
    """Varint bytes of each value: `(bytes (n, 5) uint8, sizes (n,))`."""
    values = np.asarray(values, np.int64)
    out = np.zeros((len(values), 5), np.uint8)
    sizes = np.ones(len(values), np.int64)
    rest = values.copy()
    for k in range(5):
        more = rest > 0x7F
        out[:, k] = (rest & 0x7F) | np.where(more, 0x80, 0)
        sizes += more if k < 4 else 0
        rest >>= 7
    return out, sizes


def _choose_neighbors(index, graph_files, undirected, max_nbrs, labeled):
    """Returns CSR arrays `(indptr, nbrs, weights)` of each seed's neighbours.

    Row `r`'s chosen neighbours are `nbrs[indptr[r]:indptr[r + 1]]`, best
    first; rows that are not seeds (`labeled`, a boolean mask) have none.
    """
    start = time.time()
    graph_ids, src_code, dst_code, wts = graph_utils.read_tsv_edge_arrays(
        graph_files)
    row_of = index.row_of
    rows = np.fromiter(map(row_of.get, graph_ids, itertools.repeat(-1)),
                       np.int64, len(graph_ids))
    src, dst = rows[src_code], rows[dst_code]
    known = (src >= 0) & (dst >= 0)
    from_seed = (src >= 0) & labeled[src]
    if undirected:
        from_seed |= (dst >= 0) & labeled[dst]
    missing = ~known & from_seed
    if missing.any():
        m = int(np.flatnonzero(missing)[0])
        unknown = dst_code[m] if dst[m] < 0 else src_code[m]
        _logger.warning(
            "%d graph edge(s) link a labeled example to an id with no "
            "example (e.g. %r); they are ignored.", int(missing.sum()),
            graph_ids[unknown])
    src, dst, wts = src[known], dst[known], wts[known]
    if undirected:
        src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
        wts = np.concatenate([wts, wts])
    keep = labeled[src]
    src, dst, wts = graph_utils.dedupe_max_weight(src[keep], dst[keep],
                                                  wts[keep])
    is_target = np.zeros(len(index.ids), bool)
    is_target[dst] = True
    targets = np.flatnonzero(is_target)
    rank = np.zeros(len(index.ids), np.int64)
    rank[targets] = graph_utils.string_rank([index.ids[t] for t in targets])
    order = _neighbor_order(src, -wts, -rank[dst])
    src, dst, wts = src[order], dst[order], wts[order]
    if max_nbrs is not None and len(src):
        first_of_row = np.r_[0, np.flatnonzero(np.diff(src)) + 1]
        row_start = np.repeat(first_of_row, np.diff(np.r_[first_of_row,
                                                          len(src)]))
        keep = np.arange(len(src)) - row_start < max_nbrs
        src, dst, wts = src[keep], dst[keep], wts[keep]
    indptr = np.zeros(len(index.ids) + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=len(index.ids)), out=indptr[1:])
    _logger.info("Chose %d neighbour links (%.1f s).", len(dst),
                 time.time() - start)
    return indptr, dst, wts


def _neighbor_order(src, key1, key2):
    """`np.lexsort((key2, key1, src))`, faster through one int64 key.

    `key1` (float) is replaced by its rank among its distinct values, and
    the three ranks are packed into one int64 when they fit.
    """
    if not len(src):
        return np.zeros(0, np.int64)
    values, key1_rank = np.unique(key1, return_inverse=True)
    low = int(key2.min())
    span2 = int(key2.max()) - low + 1
    span1 = len(values)
    if src.min() < 0 or (int(src.max()) + 1) * span1 * span2 >= (1 << 62):
        return np.lexsort((key2, key1, src))
    key = ((src.astype(np.int64) * span1 + key1_rank.reshape(-1))
           * span2 + (key2 - low))
    # Stable: equal keys keep their order, as with lexsort.
    return np.argsort(key, kind="stable")
