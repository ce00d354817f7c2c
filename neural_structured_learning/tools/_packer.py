"""Merging neighbours' features into labeled examples (`nsl.tools.pack_nbrs`).

1. Scan every record once in bulk (`tfrecord.iter_record_chunks`: CRCs
   checked; each record shown to be a `tf.train.Example`, in bulk for the
   layout serializers write (`_wire.valid_examples`), by protobuf
   otherwise) and keep, per distinct id, where its last record lies. Ids
   come from the records' bytes (`_wire`). Read the graph TSV, keeping
   edges between known ids as int/float arrays, and pick each labeled
   example's neighbours with NumPy sorts.
2. For each labeled example, in file order, write the merged example.

When the example files total at most `_IN_MEMORY_BYTES` (default 1 GiB),
their bytes stay in memory after the scan and merged examples are written
directly in `tf.train.Example` wire format: the seed's serialized map
entries, then `NL_num_nbrs`, then for neighbour `i` its weight entry and
its own entries with each key renamed `NL_nbr_{i}_{key}` (values copied
byte for byte). The protobuf parser keeps the last entry of a repeated
key, which gives exactly the message NSL 1.4 builds with `CopyFrom`.
The output's bytes are pieces of one buffer, gathered by pyarrow
(`_gather`, `_WireMerger`).
Records in another layout, or seeds that already have `NL_*` features
(where 1.4 appends to the existing lists), are merged through protobuf
messages instead, as for larger inputs, which are read back by offset
(`os.pread`) so that memory does not depend on the size of the examples.
docs/tools.md gives measured peaks and times.
"""

import logging
import numbers
import os
import time

import numpy as np

from neural_structured_learning._core import naming
from neural_structured_learning._core import progress as _progress
from neural_structured_learning._core import validation as _validation
from neural_structured_learning.tools import _fileio
from neural_structured_learning.tools import _pages
from neural_structured_learning.tools import _wire
from neural_structured_learning.tools import graph_utils

_logger = logging.getLogger(__name__)


_IN_MEMORY_BYTES = 1 << 30  # example files up to this size stay in memory
_COLUMNS = ("file", "offset", "length", "record", "chunk", "position")


class _ExampleIndex:
    """Where the last record of each example id lies in the input files.

    `scan` the files, then `finish()`. Per row (distinct id, numbered in
    first-seen order): `ids[row]` (a pyarrow `large_string` array), and
    NumPy columns `file` (index into `files`), `offset` (of the record's
    frame), `length` (of its payload), `record` (index in its file),
    `labeled` (int8); `seeds` lists the labeled rows in the order of their
    first labeled record. A row's record is its last labeled one, or its
    last one if it has none. With `keep_records`, the scanned chunks stay
    in memory (`chunks`, with their `_wire` layout in `layouts`) and
    `chunk`/`position` locate each row's record in them.

    Ids are never Python strings in bulk: each chunk's are cut from its
    buffer as one pyarrow array, and `finish` numbers them all with one
    `dictionary_encode` (a hash table in C++, first-seen order).
    """

    def __init__(self, id_feature_name, keep_records=False):
        self.id_feature_name = id_feature_name
        self.keep_records = keep_records
        self.files = []
        self.chunks = []
        self.layouts = []
        self.ids = None  # after `finish`
        self.labeled = self.seeds = None
        self._parts = []  # per chunk: (ids, labeled, record columns)
        self._columns = {}

    def __getattr__(self, name):
        columns = self.__dict__.get("_columns", {})
        if name in columns:
            return columns[name]
        raise AttributeError(name)

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
        return count

    def _add_chunk(self, chunk, path, file_index, labeled):
        layout = _ChunkLayout(chunk)
        _wire.check_examples(chunk, path, layout.valid)
        node_ids = self._chunk_ids(chunk, layout, path)
        count = len(chunk)
        columns = {"file": np.full(count, file_index, np.int64),
                   "offset": chunk.offsets,
                   "length": chunk.lengths,
                   "record": chunk.first_index + np.arange(count)}
        self._parts.append((node_ids, labeled, columns))
        if self.keep_records:
            columns["chunk"] = np.full(count, len(self.chunks), np.int64)
            columns["position"] = np.arange(count)
            layout.compact()
            self.chunks.append(chunk)
            self.layouts.append(layout)

    def finish(self):
        """Numbers the ids and picks each row's record (see the class)."""
        # pylint: disable=import-outside-toplevel
        import pyarrow as pa
        import pyarrow.compute as pc
        parts, self._parts = self._parts, []
        encoded = pc.dictionary_encode(pa.chunked_array(
            [ids for ids, _, _ in parts], pa.large_string()).combine_chunks())
        self.ids = encoded.dictionary
        rows = encoded.indices.to_numpy().astype(np.int64)
        is_labeled = np.repeat(
            np.array([labeled for _, labeled, _ in parts], bool),
            [len(ids) for ids, _, _ in parts])
        order = np.arange(len(rows))
        last = np.full(len(self.ids), -1, np.int64)
        np.maximum.at(last, rows, order)
        last_labeled = np.full(len(self.ids), -1, np.int64)
        np.maximum.at(last_labeled, rows[is_labeled], order[is_labeled])
        self.labeled = (last_labeled >= 0).astype(np.int8)
        pick = np.where(last_labeled >= 0, last_labeled, last)
        names = _COLUMNS if self.keep_records else _COLUMNS[:4]
        self._columns = {name: np.concatenate(
            [np.zeros(0, np.int64)] + [columns[name]
                                       for _, _, columns in parts])[pick]
                         for name in names}
        labeled_rows = rows[is_labeled]
        _, first = np.unique(labeled_rows, return_index=True)
        self.seeds = labeled_rows[np.sort(first)]

    def _chunk_ids(self, chunk, layout, path):
        """The id of each record of a chunk (checked as `_id_of` does), as a
        pyarrow `large_string` array."""
        # pylint: disable=import-outside-toplevel
        import pyarrow as pa
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
        if fast.all():
            # Cut at every id's start and end; the odd pieces are the ids.
            cuts = np.empty(2 * count + 2, np.int64)
            cuts[0], cuts[-1] = 0, len(u8)
            cuts[1:-1:2], cuts[2:-1:2] = start, end
            pieces = pa.Array.from_buffers(
                pa.large_binary(), len(cuts) - 1,
                [None, pa.py_buffer(cuts), pa.py_buffer(chunk.buffer)])
            try:
                return pieces.take(pa.array(np.arange(1, 2 * count, 2))).cast(
                    pa.large_string())
            except pa.ArrowInvalid:  # not UTF-8: `_id_of` names the record
                fast[:] = False
        starts = np.zeros(count, np.int64)
        ends = np.zeros(count, np.int64)
        starts[rows], ends[rows] = start, end
        starts[~fast] = ends[~fast] = 0  # empty: left to `_id_of`
        buffer = chunk.buffer
        try:
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
        return pa.array(node_ids, pa.large_string())

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
    `first_entry`, `regular`, `features_start`, `nl_keys`. `valid` marks
    the records shown valid in bulk (`_wire.valid_examples`), until then.
    """

    __slots__ = ("u8", "regular", "features_start", "entries", "first_entry",
                 "nl_keys", "key_start", "key_end", "end", "valid")

    def __init__(self, chunk):
        self.u8 = np.frombuffer(chunk.buffer, np.uint8)
        starts = chunk.data_starts
        self.regular, self.features_start, self.entries = (
            _wire.example_entries(self.u8, starts, starts + chunk.lengths))
        entries = self.entries
        self.valid = _wire.valid_examples(self.u8, self.regular, entries)
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
        entries, self.entries, self.u8 = self.entries, None, None
        self.valid = None
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


@_pages.small_pages()  # short-lived large arrays: see `_pages`
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
    index.finish()
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

    Every output byte is a value of one `_gather.Pool` (`_pieces`), and a
    block of records is one gather (a C++ loop) patched in place. A seed's
    values: 12 bytes reserved for its frame header, its `Features` head,
    its own serialized map entries, the label entry of an unlabeled seed,
    `NL_num_nbrs`, one weight entry per neighbour `i < 10`, then one
    *template* per such neighbour: the neighbour's map entries renamed for
    neighbour 0 (`NL_nbr_0_{key}`), one per example used as a neighbour
    (`_add_copies`), whose prefix digits are overwritten with `i` after
    the gather (same length), and 4 bytes reserved for the data CRC
    (`tfrecord.frame_in_place` fills the frame).
    Neighbours `i >= 10` (when `max_nbrs` allows) and the seeds merged
    through protobuf (see `_fast`) are built in Python beforehand and
    become one piece each.
    """

    def __init__(self, index, indptr, nbrs, weights, label, slow):
        self._index = index
        self._slow = slow
        self._indptr = np.asarray(indptr, np.int64)
        self._nbrs = np.asarray(nbrs, np.int64)
        self._weights = weights
        num_rows = len(index.ids)
        chunk, position = index.chunk, index.position
        regular = np.zeros(num_rows, bool)
        nl_keys = np.zeros(num_rows, bool)
        for c, layout in enumerate(index.layouts):
            rows = np.flatnonzero(chunk == c)
            at = position[rows]
            regular[rows] = layout.regular[at]
            nl_keys[rows] = layout.nl_keys[at]
        self._regular = regular
        slot_seed = np.repeat(np.arange(num_rows), np.diff(self._indptr))
        bad_slots = np.bincount(slot_seed[~regular[self._nbrs]],
                                minlength=num_rows)
        # Seeds written from pieces; the others go through protobuf.
        self._fast = regular & ~nl_keys & (bad_slots == 0)
        name, value = label
        self._label = None if value is None else label
        self._label_fast = (value is None or not name.startswith("NL_"))
        self._label_entry = (b"" if value is None else _wire.map_entry(
            name.encode("utf-8"), _wire.int64_feature([value])))
        # Weight entries of every slot, for neighbour min(position, 9).
        slot_position = np.arange(len(nbrs)) - self._indptr[slot_seed]
        rows, key_at = _wire.float_entry_rows(
            f"{naming.NBR_PREFIX}0{naming.WEIGHT_SUFFIX}".encode(), weights)
        rows[:, key_at + len(naming.NBR_PREFIX)] = ord("0") + np.minimum(
            slot_position, 9)
        self._weight_rows = rows

    def write(self, seeds, labeled, writer, bar):
        """Writes the merged example of each seed, in order."""
        # pylint: disable=import-outside-toplevel
        from neural_structured_learning.tools import tfrecord
        seeds = np.asarray(seeds, np.int64)
        labeled = np.asarray(labeled, bool)
        fast = self._fast[seeds] & (labeled[seeds] | self._label_fast)
        pool, pieces, lengths, digits = self._pieces(seeds, labeled, fast)
        first, tpl_piece, tpl_nbr, tpl_position = digits
        framed = lengths + tfrecord.FRAME_OVERHEAD
        for start, stop in _blocks(framed):
            begin, end = first[start], first[stop]
            out = pool.gather(pieces[begin:end])
            # The templates say neighbour 0: write each slot's index digit.
            sizes = pool.lengths[pieces[begin:end]]
            piece_start = np.cumsum(sizes) - sizes
            lo, hi = np.searchsorted(tpl_piece, [begin, end])
            nbr, per_slot = tpl_nbr[lo:hi], self._digit_count[tpl_nbr[lo:hi]]
            at = (np.repeat(piece_start[tpl_piece[lo:hi] - begin], per_slot)
                  + self._digit_offsets[_wire.ranges(
                      self._digit_first[nbr], per_slot)])
            out[at] = ord("0") + np.repeat(tpl_position[lo:hi], per_slot)
            tfrecord.frame_in_place(out, lengths[start:stop])
            writer.write_framed(out, stop - start)
            bar.update(stop - start)

    def _pieces(self, seeds, labeled, fast):
        """The pieces of every record, and the pool they come from.

        Each of the pool's values is a run of pieces of a *source*: an
        input chunk cut at every map entry (`_add_copies`), or the bytes
        built here. The values are copied once into one buffer
        (`_gather.Runs`), source by source, each input chunk released once
        copied (memory): every output block is then one gather from one
        buffer.

        Returns `(pool, pieces, lengths, digits)`: the pool; its values
        for all records, back to back; each record's payload length; and
        `(first, tpl_piece, tpl_nbr, tpl_position)`: where each record's
        pieces start in `pieces` (one more entry: the end), and for each
        template piece its place in `pieces`, its example and neighbour
        index (sorted by place).
        """
        # pylint: disable=import-outside-toplevel
        from neural_structured_learning.tools import _gather
        index, indptr = self._index, self._indptr
        small, values = _gather.Pool(), _gather.Runs()
        count = indptr[seeds + 1] - indptr[seeds]
        begin = indptr[seeds]
        short = np.minimum(count, 10)
        has_long = fast & (count > 10)
        empty, label, frame, crc = values.each(small, small.add_values(
            [b"", self._label_entry, bytes(12), bytes(4)]), 4)
        num_entries = [
            _wire.map_entry(naming.NUM_NBRS_FEATURE.encode(),
                            _wire.int64_feature([k]))
            for k in range(int(count.max()) + 1 if len(count) else 1)]
        num_base = values.each(small, small.add_values(num_entries),
                               len(num_entries))[0]
        num_sizes = np.fromiter(map(len, num_entries), np.int64)
        weight_size = self._weight_rows.shape[1]
        num_slots = len(self._weight_rows)
        weight_base = values.size  # (no slots: no values)
        values.each(small, small.add_blob(
            self._weight_rows.tobytes(),
            weight_size * np.arange(1, num_slots + 1)), num_slots)
        # Pieces built in Python: protobuf merges and neighbours >= 10.
        built = np.flatnonzero(~fast | has_long)
        built_bytes = []
        for k in built.tolist():
            seed, b, e = int(seeds[k]), int(begin[k]), int(indptr[seeds[k] + 1])
            if fast[k]:
                built_bytes.append(b"".join(
                    self._long_slot(slot, slot - b)
                    for slot in range(b + 10, e)))
            else:
                built_bytes.append(self._slow.merge(
                    seed, self._nbrs[b:e].tolist(),
                    self._weights[b:e].tolist(),
                    None if labeled[seed] else self._label))
        built_value = np.zeros(len(seeds), np.int64)
        built_size = np.zeros(len(seeds), np.int64)
        built_value[built] = values.each(
            small, small.add_values(built_bytes), len(built))
        built_size[built] = np.fromiter(map(len, built_bytes), np.int64,
                                        len(built))
        used = np.zeros(len(index.ids), bool)
        used[self._nbrs[_wire.ranges(begin[fast], short[fast])]] = True
        feature_value, feature_size, templates, template_sizes = (
            self._add_copies(values, seeds[fast],
                             np.flatnonzero(used & self._regular)))
        # Slots of the fast seeds' neighbours < 10.
        rows = np.flatnonzero(fast)
        n = short[rows]
        owner = np.repeat(np.arange(len(rows)), n)
        slot_position = np.arange(int(n.sum())) - (np.cumsum(n) - n)[owner]
        slot = begin[rows][owner] + slot_position
        slot_nbr = self._nbrs[slot]
        unlabeled = ~labeled[seeds[rows]]
        features = (feature_size + unlabeled * len(self._label_entry)
                    + num_sizes[count[rows]] + weight_size * n
                    + np.bincount(owner, weights=template_sizes[slot_nbr],
                                  minlength=len(rows)).astype(np.int64)
                    + built_size[rows])
        heads, head_ends = _example_heads(features)
        head_base = values.each(small, small.add_blob(heads, head_ends),
                                len(rows))
        lengths = np.zeros(len(seeds), np.int64)
        lengths[rows] = 1 + _wire.varint_sizes(features) + features
        slow = np.flatnonzero(~fast)
        lengths[slow] = built_size[slow]
        # The values of every record, back to back.
        num_pieces = np.where(fast, 6 + 2 * short + has_long, 3)
        first = np.zeros(len(seeds) + 1, np.int64)
        np.cumsum(num_pieces, out=first[1:])
        pieces = np.empty(int(first[-1]), np.int64)
        pieces[first[:-1]] = frame
        pieces[first[1:] - 1] = crc
        pieces[first[slow] + 1] = built_value[slow]
        at = first[rows]
        pieces[at + 1] = head_base
        pieces[at + 2] = feature_value
        pieces[at + 3] = np.where(unlabeled, label, empty)
        pieces[at + 4] = num_base + count[rows]
        slot_at = at[owner] + 5 + slot_position
        pieces[slot_at] = weight_base + slot
        tpl_piece = slot_at + n[owner]
        pieces[tpl_piece] = templates[slot_nbr]
        long_rows = np.flatnonzero(has_long[rows])
        pieces[at[long_rows] + 5 + 2 * n[long_rows]] = built_value[
            rows[long_rows]]
        # The sources hold the records until their values are copied.
        index.chunks[:] = [None] * len(index.chunks)
        pool = values.pool()
        return pool, pieces, lengths, (first, tpl_piece, slot_nbr,
                                       slot_position)

    def _add_copies(self, values, seed_rows, template_rows):
        """Adds the seeds' features and the neighbours' templates.

        A seed's value is its serialized map entries; a neighbour's, its
        *template*: its map entries renamed for neighbour 0
        (`NL_nbr_0_{key}`); for neighbour `i < 10` the digit of each prefix
        is overwritten in the output, which changes no length. Each is a
        run of pieces of one source per input chunk: the chunk, cut at each
        regular record's features and at each entry's key and value fields
        (what lies before them is the entry's head), and the templates' new
        heads. Sets `_digit_offsets[_digit_first[row]:][:_digit_count[row]]`,
        the digits' offsets in the template of `row`.

        Returns:
            `(seed_value, seed_size, template_value, template_size)`:
            values and byte sizes, per seed of `seed_rows`, and per example
            row for the templates (-1 and 0 for rows not in
            `template_rows`).
        """
        # pylint: disable=import-outside-toplevel
        from neural_structured_learning.tools import _gather
        index = self._index
        num_rows = len(index.ids)
        seed_value = np.zeros(len(seed_rows), np.int64)
        seed_size = np.zeros(len(seed_rows), np.int64)
        template_value = np.full(num_rows, -1, np.int64)
        template_size = np.zeros(num_rows, np.int64)
        self._digit_first = np.zeros(num_rows, np.int64)
        self._digit_count = np.zeros(num_rows, np.int64)
        digit_parts, num_digits = [], 0
        prefix0 = f"{naming.NBR_PREFIX}0_".encode()
        seed_chunk, template_chunk = index.chunk[seed_rows], index.chunk[
            template_rows]
        for c, (record, layout) in enumerate(zip(index.chunks,
                                                 index.layouts)):
            seeds = np.flatnonzero(seed_chunk == c)
            mine = template_rows[template_chunk == c]
            if not len(seeds) and not len(mine):
                continue
            # Cuts: per regular record, its features' start, then each
            # entry's key start and end; the piece starting at cut `i` is
            # source piece `base + i + 1`.
            first_entry = layout.first_entry.astype(np.int64)
            counts = np.diff(first_entry)
            num_cuts = np.where(layout.regular, 1 + 2 * counts, 0)
            cut_first = np.cumsum(num_cuts) - num_cuts
            cuts = np.empty(int(num_cuts.sum()), np.int64)
            regular = np.flatnonzero(layout.regular)
            cuts[cut_first[regular]] = layout.features_start[regular]
            entry_record = np.repeat(np.arange(len(counts)), counts)
            entry_cut = (cut_first[entry_record] + 1 + 2 * (
                np.arange(len(entry_record)) - first_entry[entry_record]))
            cuts[entry_cut] = layout.key_start
            cuts[entry_cut + 1] = layout.end
            source = _gather.Pool()
            base = source.add_cuts(record.buffer, cuts)
            # Seeds: every piece from their features' start.
            at = index.position[seed_rows[seeds]]
            seed_value[seeds] = values.runs(
                source,
                _wire.ranges(base + cut_first[at] + 1, 2 * counts[at]),
                2 * counts[at])
            seed_size[seeds] = (record.data_starts[at] + record.lengths[at]
                                - layout.features_start[at])
            # Templates: a new head, then the key and value fields.
            at = index.position[mine]
            entry = _wire.ranges(first_entry[at], counts[at])
            key_start = layout.key_start[entry].astype(np.int64)
            key_end = layout.key_end[entry].astype(np.int64)
            end = layout.end[entry].astype(np.int64)
            key_len = key_end - key_start + len(prefix0)
            body = 1 + _wire.varint_sizes(key_len) + key_len + (end - key_end)
            heads, head_end = _entry_heads(body, key_len, prefix0)
            head_len = np.diff(np.r_[0, head_end])
            entry_size = head_len + end - key_start
            order = np.empty(2 * len(entry), np.int64)
            order[0::2] = source.add_blob(heads, head_end) + np.arange(
                len(entry))
            order[1::2] = base + entry_cut[entry] + 1
            template_value[mine] = values.runs(source, order, 2 * counts[at])
            record_size = np.bincount(
                np.repeat(np.arange(len(mine)), counts[at]),
                weights=entry_size, minlength=len(mine)).astype(np.int64)
            template_size[mine] = record_size
            # Where the digit of each entry's prefix lies in its template.
            record_stop = np.cumsum(record_size)
            entry_at = np.cumsum(entry_size) - entry_size
            record_first = np.repeat(record_stop - record_size, counts[at])
            digit_parts.append(
                (entry_at + head_len - 2 - record_first).astype(np.int32))
            self._digit_first[mine] = (num_digits + np.cumsum(counts[at])
                                       - counts[at])
            self._digit_count[mine] = counts[at]
            num_digits += len(entry)
        self._digit_offsets = (np.concatenate(digit_parts) if digit_parts
                               else np.zeros(0, np.int32))
        return seed_value, seed_size, template_value, template_size

    def _renamed(self, row, i):
        """The entries of example `row` renamed for neighbour `i` (slow)."""
        index = self._index
        layout = index.layouts[index.chunk[row]]
        buffer = index.chunks[index.chunk[row]].buffer
        at = index.position[row]
        prefix = f"{naming.NBR_PREFIX}{i}_".encode()
        out = []
        for e in range(layout.first_entry[at], layout.first_entry[at + 1]):
            key_end = int(layout.key_end[e])
            key = prefix + buffer[int(layout.key_start[e]):key_end]
            out.append(_wire.field(0x0A, _wire.field(0x0A, key) + buffer[
                key_end:int(layout.end[e])]))
        return b"".join(out)

    def _long_slot(self, slot, i):
        key = f"{naming.NBR_PREFIX}{i}{naming.WEIGHT_SUFFIX}".encode()
        weight = _wire.map_entry(key, _wire.float_feature(
            [self._weights[slot]]))
        return weight + self._renamed(int(self._nbrs[slot]), i)


_BLOCK_BYTES = 1 << 21  # output bytes assembled at a time (about): 2 MiB
# stays in cache through take, patch, framing and write (16 MiB: 5.4 s
# instead of 4.5 s at 640k examples)


def _blocks(sizes):
    """`(start, stop)` runs of items of about `_BLOCK_BYTES` (>= 1 item)."""
    ends = np.cumsum(sizes)
    start = 0
    while start < len(sizes):
        base = int(ends[start - 1]) if start else 0
        stop = int(np.searchsorted(ends, base + _BLOCK_BYTES, side="right"))
        stop = max(stop, start + 1)
        yield start, stop
        start = stop


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
    src, dst, wts, line_ids = graph_utils.read_tsv_edge_rows(graph_files,
                                                             index.ids)
    known = (src >= 0) & (dst >= 0)
    src_seed = (src >= 0) & labeled[src]
    dst_seed = (dst >= 0) & labeled[dst]
    missing = ~known & ((src_seed | dst_seed) if undirected else src_seed)
    if missing.any():
        m = int(np.flatnonzero(missing)[0])
        unknown = line_ids(m)[1 if dst[m] < 0 else 0]
        _logger.warning(
            "%d graph edge(s) link a labeled example to an id with no "
            "example (e.g. %r); they are ignored.", int(missing.sum()),
            unknown)
    # The edges out of seeds (both ways if undirected), filtered first.
    out = np.flatnonzero(known & src_seed)
    back = np.flatnonzero(known & dst_seed) if undirected else out[:0]
    src, dst, wts = graph_utils.dedupe_max_weight(
        np.concatenate([src[out], dst[back]]),
        np.concatenate([dst[out], src[back]]),
        np.concatenate([wts[out], wts[back]]))
    is_target = np.zeros(len(index.ids), bool)
    is_target[dst] = True
    targets = np.flatnonzero(is_target)
    rank = np.zeros(len(index.ids), np.int64)
    rank[targets] = graph_utils.string_rank(
        index.ids.take(targets).to_pylist())
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
