"""Merging neighbours' features into labeled examples (`nsl.tools.pack_nbrs`).

Two passes over the example files, never holding the examples in memory:

1. Scan every record once (checking CRCs) and keep, per distinct id, where
   its last record lies: file, byte offset, length. Stream the graph TSV,
   keeping edges between known ids as int/float arrays, and pick each
   labeled example's neighbours with NumPy sorts.
2. For each labeled example, in file order, read its record and its
   neighbours' records back by offset (`os.pread`), merge, and append the
   result to the output file.

Memory is O(number of distinct ids + number of graph lines) plus one merged
example; it does not depend on the size of the examples (NSL 1.4 held every
parsed example). docs/tools.md gives measured peaks.
"""

import array
import collections
import logging
import numbers
import os
import time

import numpy as np

from neural_structured_learning._core import naming
from neural_structured_learning._core import progress as _progress
from neural_structured_learning._core import validation as _validation
from neural_structured_learning.tools import _fileio
from neural_structured_learning.tools import graph_utils

_logger = logging.getLogger(__name__)


class _ExampleIndex:
    """Where the last record of each example id lies in the input files."""

    def __init__(self, id_feature_name):
        self.id_feature_name = id_feature_name
        self.files = []
        self.row_of = {}  # id -> row
        self.ids = []  # row -> id
        self.file = array.array("q")  # row -> index into self.files
        self.offset = array.array("q")
        self.length = array.array("q")
        self.record = array.array("q")  # row -> record index in its file
        self.labeled = array.array("b")
        self.seeds = array.array("q")  # labeled rows in first-seen order

    def scan(self, path, labeled, bar):
        """Records every example of `path`; returns the number of records."""
        # pylint: disable=import-outside-toplevel
        from neural_structured_learning.tools import example_proto
        from neural_structured_learning.tools import tfrecord
        parse = example_proto.Example.FromString
        file_index = len(self.files)
        self.files.append(path)
        count = 0
        for index, (offset, data) in enumerate(
                tfrecord.iter_file_records(path)):
            node_id = self._id_of(parse(data), path, index, offset)
            row = self.row_of.get(node_id)
            if row is None:
                row = self.row_of[node_id] = len(self.ids)
                self.ids.append(node_id)
                for column in (self.file, self.offset, self.length,
                               self.record, self.labeled):
                    column.append(0)
            if labeled and not self.labeled[row]:
                self.labeled[row] = 1
                self.seeds.append(row)
            if labeled or not self.labeled[row]:
                self.file[row] = file_index
                self.offset[row] = offset
                self.length[row] = len(data)
                self.record[row] = index
            count += 1
            bar.update(1)
        return count

    def _id_of(self, example, path, index, offset):
        feature = example.features.feature.get(self.id_feature_name)
        where = f"{path!r}, record {index} at byte offset {offset}"
        if feature is None:
            raise ValueError(
                f"The example in {where} has no feature "
                f"{self.id_feature_name!r} (its features: "
                f"{sorted(example.features.feature)}); every example needs "
                "an id.")
        kind = feature.WhichOneof("kind")
        if kind != "bytes_list" or len(feature.bytes_list.value) != 1:
            values = len(getattr(feature, kind).value) if kind else 0
            raise ValueError(
                f"The id feature {self.id_feature_name!r} of the example in "
                f"{where} is a {kind or 'feature with no value'} with "
                f"{values} value(s); expected a bytes_list with one value.")
        raw = feature.bytes_list.value[0]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"The id {raw!r} of the example in {where} is not "
                             "UTF-8.") from None


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
    if not isinstance(id_feature_name, str) or not id_feature_name:
        raise ValueError("`id_feature_name` must be a non-empty string. "
                         f"Received: id_feature_name={id_feature_name!r}")
    _fileio.check_output_path(output_training_data_path,
                              what="`output_training_data_path`")
    start = time.time()
    labeled_files = _fileio.expand_paths(labeled_examples_path,
                                         what="`labeled_examples_path`")
    unlabeled_files = (_fileio.expand_paths(
        unlabeled_examples_path, what="`unlabeled_examples_path`")
                       if unlabeled_examples_path else [])
    graph_files = _fileio.expand_paths(graph_path, what="`graph_path`")

    index = _ExampleIndex(id_feature_name)
    with _progress.progress_bar(desc="Indexing examples", unit="example",
                                enabled=progress) as bar:
        for path in unlabeled_files:
            index.scan(path, False, bar)
        for path in labeled_files:
            index.scan(path, True, bar)
    if not index.seeds:
        raise ValueError(f"No labeled examples found in {labeled_files!r}.")
    _logger.info("Indexed %d distinct examples, %d labeled (%.1f s).",
                 len(index.ids), len(index.seeds), time.time() - start)

    labeled = np.frombuffer(index.labeled, np.int8).astype(bool)
    seeds = list(index.seeds)
    if unlabeled_label is not None:
        seeds += np.flatnonzero(~labeled).tolist()
    is_seed = np.zeros(len(index.ids), bool)
    is_seed[seeds] = True
    indptr, nbrs, weights = _choose_neighbors(
        index, graph_files, add_undirected_edges, max_nbrs, is_seed)

    out_degrees = collections.Counter()
    with _Merger(index) as merger, tfrecord.TFRecordWriter(
            output_training_data_path) as writer, _progress.progress_bar(
                desc="Packing", unit="example", total=len(seeds),
                enabled=progress) as bar:
        for seed in seeds:
            begin, end = indptr[seed], indptr[seed + 1]
            label = None if labeled[seed] else (label_feature_name,
                                                unlabeled_label)
            writer.write(merger.merge(seed, nbrs[begin:end].tolist(),
                                      weights[begin:end].tolist(), label))
            out_degrees[int(end - begin)] += 1
            bar.update(1)
    _logger.info("Wrote %d merged examples to %s (%.1f s). Out-degree "
                 "histogram: %s", len(seeds), output_training_data_path,
                 time.time() - start, sorted(out_degrees.items()))


class _Merger:
    """Reads examples back by offset and merges neighbours into seeds."""

    def __init__(self, index):
        # pylint: disable=import-outside-toplevel
        from neural_structured_learning.tools import example_proto
        from neural_structured_learning.tools import tfrecord
        self._index = index
        self._parse = example_proto.Example.FromString
        self._read_record = tfrecord.read_record_at
        self._fds = []

    def __enter__(self):
        for path in self._index.files:
            self._fds.append(os.open(path, os.O_RDONLY))
        return self

    def __exit__(self, *exc_info):
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def _example(self, row):
        index = self._index
        file_index = index.file[row]
        return self._parse(self._read_record(
            self._fds[file_index], index.offset[row], index.length[row],
            path=index.files[file_index], index=index.record[row]))

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


def _choose_neighbors(index, graph_files, undirected, max_nbrs, labeled):
    """Returns CSR arrays `(indptr, nbrs, weights)` of each seed's neighbours.

    Row `r`'s chosen neighbours are `nbrs[indptr[r]:indptr[r + 1]]`, best
    first; rows that are not seeds (`labeled`, a boolean mask) have none.
    """
    start = time.time()
    graph_ids, src_code, dst_code, wts = graph_utils.read_tsv_edge_arrays(
        graph_files)
    row_of = index.row_of
    rows = np.array([row_of.get(i, -1) for i in graph_ids], np.int64)
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
    targets = np.unique(dst)
    rank = np.zeros(len(index.ids), np.int64)
    rank[targets] = graph_utils.string_rank([index.ids[t] for t in targets])
    order = np.lexsort((-rank[dst], -wts, src))
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
