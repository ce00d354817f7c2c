"""Weighted graphs: the NSL 1.4 dict helpers, TSV files and CSR arrays.

NSL 1.4 represents a weighted directed graph in memory as a nested dict,
`{source_id: {target_id: weight}}`, and on disk as a TSV file with one edge
per line, `source_id<TAB>target_id[<TAB>weight]` (weight 1.0 when absent).
For example the edges `A -0.5-> B`, `A -0.9-> C`, `B -0.4-> A`, `B -1.0-> C`
and `C -0.8-> D` are

    {"A": {"B": 0.5, "C": 0.9}, "B": {"A": 0.4, "C": 1.0}, "C": {"D": 0.8}}

`add_edge`, `add_undirected_edges`, `read_tsv_graph` and `write_tsv_graph`
keep 1.4's behaviour (duplicate edges keep the largest weight; the writer
prints weights with `%f`, 6 decimals), except that malformed TSV lines raise
a `ValueError` naming the file and line (1.4 raised a bare `IndexError`),
`\\r\\n` line ends are accepted, and files are written atomically.

`load_graph_csr` turns a TSV file, a dict, an edge list or a
`scipy.sparse` matrix into compact NumPy CSR arrays (`Graph`), with string
ids mapped to row indices, for vectorised per-batch neighbour lookup.
"""

import dataclasses
import functools
import itertools
import logging
import math
import os
import time

import numpy as np

from neural_structured_learning.tools import _fileio

__all__ = [
    "Graph",
    "UnknownNodeError",
    "add_edge",
    "add_undirected_edges",
    "iter_tsv_edges",
    "load_graph_csr",
    "read_tsv_edge_arrays",
    "read_tsv_edge_rows",
    "read_tsv_graph",
    "write_tsv_graph",
]

_logger = logging.getLogger(__name__)


def add_edge(graph, edge):
    """Adds an edge to `graph`, keeping the larger weight of duplicates.

    Args:
        graph: a `dict` `source_id -> {target_id: weight}`, updated in place.
        edge: `[source, target]` or `[source, target, weight]`; `weight` may
            be a number or a string (`float(weight)` is stored) and defaults
            to 1.0.

    Returns:
        `True` if and only if the edge `source -> target` was not in `graph`.
    """
    source = edge[0]
    target = edge[1]
    weight = float(edge[2]) if len(edge) > 2 else 1.0
    targets = graph.setdefault(source, {})
    is_new_edge = target not in targets
    if is_new_edge or weight > targets[target]:
        targets[target] = weight
    return is_new_edge


def add_undirected_edges(graph):
    """Makes every edge of `graph` bidirectional, in place.

    For every edge `s -> t` of weight `w`, adds `t -> s` with weight `w`
    through `add_edge`, so afterwards `graph[s][t] == graph[t][s] ==
    max(w_st, w_ts)` for every pair joined in either direction.

    Args:
        graph: a `dict` `source_id -> {target_id: weight}`.

    Returns:
        `None`; `graph` is modified.
    """
    start = time.time()
    edges = [(s, t, w) for s, targets in graph.items()
             for t, w in targets.items()]
    for s, t, w in edges:
        add_edge(graph, [t, s, w])
    _logger.info("Made all edges bidirectional (%.2f s); %d nodes.",
                 time.time() - start, len(graph))


def iter_tsv_edges(paths):
    """Yields `(source, target, weight)` for each line of graph TSV files.

    Each line must be `source<TAB>target` or `source<TAB>target<TAB>weight`
    (columns after the third are ignored, as in NSL 1.4); a trailing `\\r` is
    removed; the weight defaults to 1.0.

    Args:
        paths: a file name, a glob, or a list of them.

    Yields:
        `(source: str, target: str, weight: float)`.

    Raises:
        ValueError: for a line with fewer than 2 columns (including an empty
            line), an empty id, or a weight that is not a finite number; the
            message names the file and the 1-based line number.
    """
    for path in _fileio.expand_paths(paths, what="`graph`"):
        with open(path, "rb") as f:
            for line_number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as e:
                    raise _tsv_error(path, line_number, raw,
                                     f"not UTF-8 ({e.reason})") from None
                fields = line.split("\t")
                if len(fields) < 2 or not fields[0] or not fields[1]:
                    raise _tsv_error(
                        path, line_number, line,
                        "expected 'source<TAB>target[<TAB>weight]' with "
                        "non-empty ids")
                if len(fields) == 2:
                    yield fields[0], fields[1], 1.0
                    continue
                try:
                    weight = float(fields[2])
                except ValueError:
                    weight = math.nan
                if not math.isfinite(weight):
                    raise _tsv_error(
                        path, line_number, line,
                        f"the weight {fields[2]!r} is not a finite number")
                yield fields[0], fields[1], weight


def _tsv_error(path, line_number, line, problem):
    return ValueError(
        f"Malformed graph file {path!r}, line {line_number}: {problem}. "
        f"Received: {line!r}")


def read_tsv_edge_arrays(paths):
    """Reads graph TSV files into integer edge arrays.

    Same format and errors as `iter_tsv_edges`. Files whose lines all have
    3 columns, non-empty UTF-8 ids and finite weights are parsed by
    `pyarrow.csv` (multi-threaded, no per-line Python); any other file (or
    all files, without pyarrow) goes through `iter_tsv_edges`, which accepts
    2-column lines and reports malformed ones by line number.

    Args:
        paths: a file name, a glob, or a list of them.

    Returns:
        `(node_ids, sources, targets, weights)`: `node_ids` is a list of the
        distinct ids; `sources` and `targets` are int64 arrays of positions in
        `node_ids`, one per line, and `weights` a float64 array.

    Raises:
        ValueError: for a malformed line (the message gives its number).
    """
    files = _fileio.expand_paths(paths, what="`graph`")
    columns = _read_tsv_columns(files)
    if columns is None:  # no pyarrow
        return _edge_arrays_python(files)
    # pylint: disable=import-outside-toplevel
    import pyarrow as pa
    import pyarrow.compute as pc
    sources, targets, weights = columns
    num_edges = len(weights)
    if not num_edges:
        return [], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    encoded = pc.dictionary_encode(pa.chunked_array(
        sources.chunks + targets.chunks, pa.large_string())).combine_chunks()
    codes = encoded.indices.to_numpy().astype(np.int64)
    return (encoded.dictionary.to_pylist(), codes[:num_edges],
            codes[num_edges:], weights.to_numpy())


def read_tsv_edge_rows(paths, ids):
    """Reads graph TSV files into edges between the positions of `ids`.

    `read_tsv_edge_arrays`, with each source and target looked up in `ids`
    (distinct `str`: a list, or a pyarrow string array) instead of
    numbered: by pyarrow's hash join (`index_in`) when pyarrow reads the
    files, with no Python string per line.

    Returns:
        `(sources, targets, weights, line_ids)`: int64 positions in `ids`
        (-1 for an id not in it), one per line; a float64 array; and
        `line_ids(i)`, the `(source, target)` ids of line `i` (`str`).
    """
    files = _fileio.expand_paths(paths, what="`graph`")
    columns = _read_tsv_columns(files)
    if columns is None:  # no pyarrow
        node_ids, src, dst, weights = _edge_arrays_python(files)
        row_of = {node_id: row for row, node_id in enumerate(ids)}
        rows = np.fromiter(map(row_of.get, node_ids, itertools.repeat(-1)),
                           np.int64, len(node_ids))
        return (rows[src], rows[dst], weights,
                lambda i: (node_ids[src[i]], node_ids[dst[i]]))
    # pylint: disable=import-outside-toplevel
    import pyarrow as pa
    import pyarrow.compute as pc
    sources, targets, weights = columns
    # One lookup for both columns: `index_in` hashes `ids` on every call.
    found = pc.index_in(
        pa.chunked_array(sources.chunks + targets.chunks, pa.large_string()),
        value_set=ids if isinstance(ids, pa.Array) else pa.array(
            ids, pa.large_string())).fill_null(-1)
    rows = np.empty(len(found), np.int64)
    at = 0
    for chunk in found.chunks:  # int32: one copy into int64
        rows[at:at + len(chunk)] = chunk.to_numpy()
        at += len(chunk)
    return (rows[:len(sources)], rows[len(sources):], weights.to_numpy(),
            lambda i: (sources[i].as_py(), targets[i].as_py()))


def _read_tsv_columns(files):
    """`(sources, targets, weights)` pyarrow chunked arrays, or None.

    None when pyarrow is missing. Files that `pyarrow.csv` cannot read
    (see `read_tsv_edge_arrays`) go through `iter_tsv_edges`.
    """
    try:
        import pyarrow as pa  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    columns = ([], [], [])
    for path in files:
        table = _read_tsv_with_arrow(path)
        if table is None:
            node_ids, src, dst, weights = _edge_arrays_python([path])
            node_ids = pa.array(node_ids, pa.large_string())
            table = (node_ids.take(src), node_ids.take(dst),
                     pa.array(weights, pa.float64()))
        for column, part in zip(columns, table):
            column.extend(part.chunks if hasattr(part, "chunks") else [part])
    return tuple(pa.chunked_array(column, kind) for column, kind in zip(
        columns, (pa.large_string(), pa.large_string(), pa.float64())))


def _read_tsv_with_arrow(path):
    """`(sources, targets, weights)` columns, or `None` if not plain 3-column."""
    # pylint: disable=import-outside-toplevel
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv
    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(column_names=["s", "t", "w"]),
            parse_options=pa_csv.ParseOptions(
                delimiter="\t", quote_char=False, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(
                column_types={"s": pa.large_string(), "t": pa.large_string(),
                              "w": pa.float64()},
                null_values=[], strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None  # e.g. 2- or 4-column lines, a bad weight, not UTF-8
    sources, targets, weights = table.columns
    if (weights.null_count
            or not pc.all(pc.is_finite(weights)).as_py()
            or pc.min(pc.utf8_length(sources)).as_py() == 0
            or pc.min(pc.utf8_length(targets)).as_py() == 0):
        return None
    return sources, targets, weights


def _edge_arrays_python(files):
    """`read_tsv_edge_arrays` through `iter_tsv_edges`."""
    code_of = {}
    src, dst, weights = [], [], []
    for source, target, weight in iter_tsv_edges(files):
        src.append(code_of.setdefault(source, len(code_of)))
        dst.append(code_of.setdefault(target, len(code_of)))
        weights.append(weight)
    return (list(code_of), np.array(src, np.int64), np.array(dst, np.int64),
            np.array(weights, np.float64))


def read_tsv_graph(filename):
    """Reads a graph TSV file into a `dict` `source -> {target: weight}`.

    Each line is `source<TAB>target[<TAB>weight]`; the weight defaults to
    1.0; duplicate edges keep the largest weight (`add_edge`).

    Args:
        filename: a TSV file name (or a glob or list of names, read in order).

    Returns:
        The graph as a nested `dict`.

    Raises:
        ValueError: for a malformed line (the message gives its number).
        FileNotFoundError: if the file does not exist.
    """
    start = time.time()
    graph = {}
    new_edges = 0
    for source, target, weight in iter_tsv_edges(filename):
        targets = graph.setdefault(source, {})
        if target not in targets:
            targets[target] = weight
            new_edges += 1
        elif weight > targets[target]:
            targets[target] = weight
    _logger.info("Read %d edges from %s (%.2f s).", new_edges, filename,
                 time.time() - start)
    return graph


def write_tsv_graph(filename, graph):
    """Writes a `dict` graph as TSV lines `source<TAB>target<TAB>%f`.

    Lines follow the dicts' iteration order, as in NSL 1.4. The file is
    written atomically (temporary file, then rename).

    Args:
        filename: the output file name.
        graph: a `dict` `source_id -> {target_id: weight}`.

    Raises:
        ValueError: if an id contains a tab or a newline, which the TSV
            format cannot represent.
    """
    start = time.time()
    with _fileio.atomic_output(filename, "w") as f:
        for source, targets in graph.items():
            check_tsv_id(source)
            for target, weight in targets.items():
                check_tsv_id(target)
                f.write("%s\t%s\t%f\n" % (source, target, weight))
    _logger.info("Wrote graph to %s (%.2f s).", filename, time.time() - start)


def check_tsv_id(node_id):
    if "\t" in node_id or "\n" in node_id or "\r" in node_id:
        raise ValueError(
            f"Node id {node_id!r} contains a tab or a line break, which the "
            "graph TSV format cannot represent.")


class UnknownNodeError(ValueError):
    """An edge names a node that is not one of the given nodes (ids or rows).

    Raised by `load_graph_csr` with `missing_ids="raise"`.
    """


@dataclasses.dataclass(frozen=True, eq=False)
class Graph:
    """A weighted directed graph as CSR arrays, rows indexed by node.

    The out-edges of row `r` are `indices[indptr[r]:indptr[r + 1]]` with
    weights `weights[indptr[r]:indptr[r + 1]]`, sorted by weight descending,
    ties broken towards the lexicographically larger target id: the order in
    which NSL 1.4's `pack_nbrs` picks neighbours, so the first `N` entries of
    a row are the `N` neighbours `pack_nbrs(max_nbrs=N)` would pack.

    Attributes:
        ids: `str` array of shape `(num_nodes,)`; `ids[r]` is row `r`'s id.
        indptr: int64 array of shape `(num_nodes + 1,)`.
        indices: int32 array of shape `(num_edges,)` of target rows (int64
            when there are 2**31 nodes or more).
        weights: float32 array of shape `(num_edges,)`.
    """

    ids: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray

    @property
    def num_nodes(self):
        return len(self.indptr) - 1

    @property
    def num_edges(self):
        return len(self.indices)

    @functools.cached_property
    def _lookup(self):
        """`(sorter, sorted_ids)` for `rows` (computed on first use)."""
        sorter = np.argsort(self.ids, kind="stable")
        return sorter, self.ids[sorter]

    def rows(self, ids):
        """Returns the row index of each id in `ids` (int64 array).

        Args:
            ids: a sequence or array of node ids (`str`).

        Raises:
            KeyError: if an id is not a node of the graph.
        """
        sorter, sorted_ids = self._lookup
        ids = np.asarray(ids, dtype=str)
        position = np.minimum(np.searchsorted(sorted_ids, ids),
                              max(self.num_nodes - 1, 0))
        found = (sorted_ids[position] == ids) if self.num_nodes else (
            np.zeros(ids.shape, bool))
        if not np.all(found):
            missing = ids[~found]
            raise KeyError(f"{missing.size} id(s) are not nodes of the graph, "
                           f"e.g. {missing.ravel()[:5].tolist()}.")
        return sorter[position].astype(np.int64)

    def neighbors(self, row):
        """Returns `(indices, weights)` of row `row`'s out-edges (views)."""
        start, end = self.indptr[row], self.indptr[row + 1]
        return self.indices[start:end], self.weights[start:end]

    def to_scipy(self):
        """Returns the graph as a `scipy.sparse.csr_array` (needs scipy)."""
        import scipy.sparse  # pylint: disable=import-outside-toplevel
        return scipy.sparse.csr_array(
            (self.weights, self.indices, self.indptr),
            shape=(self.num_nodes, self.num_nodes))


def load_graph_csr(graph, *, ids=None, add_undirected_edges=False,
                   drop_self_loops=False, drop_zero_weights=False,
                   missing_ids="raise"):
    """Loads a graph into CSR arrays with string ids mapped to rows.

    Accepted inputs:

    * a graph TSV file name (`str` or `os.PathLike`), a glob, or a list of
      them, in the format written by `write_tsv_graph` and `build_graph`;
    * a `dict` `source_id -> {target_id: weight}` (NSL 1.4's in-memory form);
    * an edge list: a tuple `(sources, targets)` or `(sources, targets,
      weights)` of 1-D arrays, or a 2-D array of shape `(num_edges, 2)`;
    * a square `scipy.sparse` matrix or array, `A[i, j]` = weight of `i -> j`.

    Sources and targets that are strings are node ids. Integer sources and
    targets (edge-list arrays or a sparse matrix) are row indices: the graph
    has `len(ids)` rows if `ids` is given, else `shape[0]` (sparse) or
    `max index + 1` rows, and row `r` gets the id `ids[r]`, default `str(r)`.

    Duplicate edges keep the largest weight (as `add_edge`). With
    `add_undirected_edges=True`, every edge `s -> t` also adds `t -> s`, so
    both directions weigh `max(w_st, w_ts)` (as `add_undirected_edges`).
    Self-loops are kept unless `drop_self_loops=True` (NSL 1.4 keeps them).

    Rows are numbered by `ids` if given, else by the ids sorted
    lexicographically (Python `str` order). Each row's edges are sorted by
    weight descending, then target id descending (see `Graph`).

    Example: the TSV file

        a<TAB>c<TAB>0.9
        a<TAB>b<TAB>0.5
        b<TAB>c

    gives `ids = ['a', 'b', 'c']`, `indptr = [0, 2, 3, 3]`,
    `indices = [2, 1, 2]`, `weights = [0.9, 0.5, 1.0]`; so row 0 (`a`) links
    to `c` (0.9) then `b` (0.5), row 1 (`b`) to `c` (1.0), and row 2 (`c`)
    has no out-edge. With `add_undirected_edges=True` the result is
    `indptr = [0, 2, 4, 6]`, `indices = [2, 1, 2, 0, 1, 0]`,
    `weights = [0.9, 0.5, 1.0, 0.5, 1.0, 0.9]`.

    Args:
        graph: the graph, in one of the forms above.
        ids: optional sequence of node ids fixing the rows (e.g. the ids of
            your feature rows, in order). Must be unique.
        add_undirected_edges: whether to add the reverse of every edge.
        drop_self_loops: whether to drop edges `i -> i`.
        drop_zero_weights: whether to drop edges of weight 0 (after
            duplicates are merged, keeping the largest weight).
        missing_ids: with `ids` given, what to do with an edge whose source
            or target is not in `ids`: `"raise"` (default) or `"drop"`.

    Returns:
        A `Graph`.

    Raises:
        ValueError: for malformed inputs (TSV lines, non-finite weights,
            arrays of mismatched shapes, negative indices, duplicate `ids`),
            or ids missing from `ids` with `missing_ids="raise"` (an
            `UnknownNodeError`, as are row indices out of range).
        TypeError: for an unsupported `graph` type.
    """
    if missing_ids not in ("raise", "drop"):
        raise ValueError("`missing_ids` must be 'raise' or 'drop'. Received: "
                         f"missing_ids={missing_ids!r}")
    if ids is not None:
        ids = np.asarray(ids, dtype=str)
        if ids.ndim != 1:
            raise ValueError(f"`ids` must be 1-D. Received shape {ids.shape}.")
        unique = np.unique(ids)
        if len(unique) != len(ids):
            raise ValueError(f"`ids` must be unique; {len(ids) - len(unique)} "
                             "duplicate(s) found.")
    src, dst, weights, node_ids = _edges_as_rows(graph, ids, missing_ids)
    if not np.all(np.isfinite(weights)):
        bad = int(np.flatnonzero(~np.isfinite(weights))[0])
        raise ValueError(
            f"Edge weights must be finite. Received {weights[bad]} for the "
            f"edge {str(node_ids[src[bad]])!r} -> {str(node_ids[dst[bad]])!r}.")
    if drop_self_loops:
        keep = src != dst
        src, dst, weights = src[keep], dst[keep], weights[keep]
    if add_undirected_edges:
        src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
        weights = np.concatenate([weights, weights])
    rank = string_rank(node_ids)
    src, dst, weights = dedupe_max_weight(src, dst, weights)
    if drop_zero_weights:
        keep = weights != 0
        src, dst, weights = src[keep], dst[keep], weights[keep]
    order = np.lexsort((-rank[dst], -weights, src))
    src, dst, weights = src[order], dst[order], weights[order]
    num_nodes = len(node_ids)
    indptr = np.zeros(num_nodes + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=num_nodes), out=indptr[1:])
    index_dtype = np.int32 if num_nodes < 2**31 else np.int64
    return Graph(ids=node_ids, indptr=indptr, indices=dst.astype(index_dtype),
                 weights=weights.astype(np.float32))


def dedupe_max_weight(src, dst, weights):
    """Keeps one edge per `(src, dst)` pair, the one of largest weight.

    Args:
        src, dst: int arrays of shape `(num_edges,)`.
        weights: float array of shape `(num_edges,)`.

    Returns:
        `(src, dst, weights)` sorted by `(src, dst)`, without duplicates.
    """
    src, dst = np.asarray(src), np.asarray(dst)
    weights = np.asarray(weights)
    if len(src) and src.min() >= 0 and dst.min() >= 0 and np.isfinite(
            weights).all() and (int(src.max()) + 1) * (int(dst.max()) + 1) < (
                1 << 62):
        # One sort of an int64 key, then the maximum of each run: several
        # times faster than a 3-key lexsort.
        key = src.astype(np.int64) * (int(dst.max()) + 1) + dst
        order = np.argsort(key)  # equal keys are one pair: order is moot
        key = key[order]
        first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        order_first = order[first]
        return (src[order_first], dst[order_first],
                np.maximum.reduceat(weights[order], first))
    order = np.lexsort((-weights, dst, src))
    src, dst, weights = src[order], dst[order], weights[order]
    first = np.ones(len(src), bool)
    first[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
    return src[first], dst[first], weights[first]


def string_rank(strings):
    """Returns `rank`, int64, with `rank[a] < rank[b]` iff `strings[a] <
    strings[b]` in Python `str` order (ties by position).

    Args:
        strings: a list of `str`, or a NumPy `str` array.
    """
    if isinstance(strings, np.ndarray):
        order = np.argsort(strings, kind="stable")
    else:
        order = sorted(range(len(strings)), key=strings.__getitem__)
    rank = np.empty(len(strings), np.int64)
    rank[order] = np.arange(len(strings))
    return rank


def _edges_as_rows(graph, ids, missing_ids):
    """Returns `(src_rows, dst_rows, weights float64, node_ids)` of `graph`."""
    if hasattr(graph, "tocoo"):
        if len(graph.shape) != 2 or graph.shape[0] != graph.shape[1]:
            raise ValueError("A sparse `graph` must be square, shape "
                             f"(num_nodes, num_nodes). Received {graph.shape}.")
        coo = graph.tocoo()
        return _index_edges(np.asarray(coo.row), np.asarray(coo.col),
                            np.asarray(coo.data, np.float64), ids,
                            graph.shape[0])
    if isinstance(graph, (str, os.PathLike)) or (
            isinstance(graph, list) and graph
            and all(isinstance(p, (str, os.PathLike)) for p in graph)):
        return _id_edges(*read_tsv_edge_arrays(graph), ids, missing_ids)
    if isinstance(graph, dict):
        code_of = {}
        src, dst, weights = [], [], []
        for source, out_edges in graph.items():
            for target, weight in out_edges.items():
                src.append(code_of.setdefault(source, len(code_of)))
                dst.append(code_of.setdefault(target, len(code_of)))
                weights.append(float(weight))
        return _id_edges([str(i) for i in code_of], np.array(src, np.int64),
                         np.array(dst, np.int64),
                         np.array(weights, np.float64), ids, missing_ids)
    if isinstance(graph, tuple) and len(graph) in (2, 3):
        sources, targets = np.asarray(graph[0]), np.asarray(graph[1])
        weights = (np.asarray(graph[2], np.float64) if len(graph) == 3
                   else np.ones(len(sources)))
    elif isinstance(graph, np.ndarray) and graph.ndim == 2 and (
            graph.shape[1] == 2):
        sources, targets = graph[:, 0], graph[:, 1]
        weights = np.ones(len(graph))
    else:
        raise TypeError(
            "`graph` must be a TSV file name, a {source: {target: weight}} "
            "dict, a (sources, targets[, weights]) tuple of arrays, a "
            "(num_edges, 2) array or a scipy.sparse matrix. Received: "
            f"{type(graph).__name__}")
    if not (sources.ndim == 1 and sources.shape == targets.shape
            == weights.shape):
        raise ValueError(
            "Edge-list arrays must be 1-D and of one length. Received shapes "
            f"sources={sources.shape}, targets={targets.shape}, "
            f"weights={weights.shape}.")
    if sources.dtype.kind in "iu" and targets.dtype.kind in "iu":
        return _index_edges(sources, targets, weights, ids, None)
    node_ids, codes = np.unique(
        np.concatenate([sources.astype(str), targets.astype(str)]),
        return_inverse=True)
    return _id_edges(node_ids, codes[:len(sources)], codes[len(sources):],
                     weights, ids, missing_ids)


def _index_edges(src, dst, weights, ids, num_rows):
    """Edges given as row indices."""
    src, dst = src.astype(np.int64), dst.astype(np.int64)
    if len(src) and min(src.min(), dst.min()) < 0:
        raise ValueError("Edge row indices must be >= 0. Received "
                         f"{min(src.min(), dst.min())}.")
    largest = int(max(src.max(), dst.max())) if len(src) else -1
    if ids is not None:
        num_rows = len(ids)
    elif num_rows is None:
        num_rows = largest + 1
    if largest >= num_rows:
        raise UnknownNodeError(
            f"Edge row index {largest} is out of range for {num_rows} nodes "
            f"(len(ids) = {num_rows}).")
    node_ids = ids if ids is not None else np.arange(num_rows).astype(str)
    return src, dst, weights, node_ids


def _id_edges(node_ids, src, dst, weights, ids, missing_ids):
    """Edges as positions `src`, `dst` in `node_ids`, a list of distinct ids."""
    if ids is None:
        rank = string_rank(node_ids)
        sorted_ids = np.empty(len(node_ids), dtype=object)
        sorted_ids[rank] = node_ids
        return (rank[src], rank[dst], weights,
                sorted_ids.astype(str) if len(node_ids) else
                np.zeros(0, str))
    index = {node_id: row for row, node_id in enumerate(ids.tolist())}
    lookup = np.array([index.get(str(i), -1) for i in node_ids], np.int64)
    src, dst = lookup[src], lookup[dst]
    missing = (src < 0) | (dst < 0)
    if missing.any():
        if missing_ids == "raise":
            unknown = sorted(str(i) for i, row in zip(node_ids, lookup)
                             if row < 0)
            raise UnknownNodeError(
                f"{len(unknown)} graph node id(s) are not in `ids`, e.g. "
                f"{unknown[:5]} ({int(missing.sum())} edge(s)). Pass "
                "missing_ids='drop' to drop those edges.")
        keep = ~missing
        src, dst, weights = src[keep], dst[keep], weights[keep]
    return src, dst, weights, ids
