r"""Multi-hop and personalized-PageRank neighbourhoods of a graph.

NumPy and SciPy sparse only, no deep-learning framework:

* `khop_neighbors`: each node's `top_k` heaviest nodes within `k` hops,
  weighted by the sum of the first `k` powers of the normalised adjacency
  (Graph-MLP's neighbourhoods);
* `ppr_neighbors`: each node's `top_k` nodes by personalized PageRank
  (APPNP's propagation matrix, PPRGo's top-k neighbourhoods);
* `write_neighborhood_graph`: either of them from a graph file (or any input
  of `load_graph_csr`) to a graph TSV file that `pack_nbrs`,
  `load_graph_csr` and `nsl.keras.NeighborBatchDataset` read.

Both functions return a `Graph` whose row `r` holds node `r`'s chosen
neighbours sorted by weight descending, ties towards the larger id: the
order in which `pack_nbrs` picks neighbours.

Command line (`nsl neighborhoods --help` lists the flags):

    nsl neighborhoods --graph graph.tsv --output ppr.tsv --method ppr \
        --alpha 0.1 --top_k 10

References:
    Hu et al., 2021, Graph-MLP: https://arxiv.org/abs/2106.04051
    Klicpera et al., 2019, APPNP: https://arxiv.org/abs/1810.05997
    Bojchevski et al., 2020, PPRGo: https://arxiv.org/abs/2007.01570
    Andersen, Chung & Lang, 2006, Local graph partitioning using PageRank
        vectors (the "push" bounds used by `ppr_neighbors`).
"""

import logging
import numbers
import time

import numpy as np

from neural_structured_learning._core import flags as _flags
from neural_structured_learning._core import progress as _progress
from neural_structured_learning._core import validation as _validation
from neural_structured_learning.tools import _fileio
from neural_structured_learning.tools import graph_utils

__all__ = ["configure", "khop_neighbors", "ppr_neighbors",
           "write_neighborhood_graph"]

_logger = logging.getLogger(__name__)

METHODS = ("khop", "ppr")
NORMALIZATIONS = ("symmetric", "row")
_DEFAULT_BLOCK_SIZE = 1024
_WRITE_CHUNK = 1 << 16  # Lines formatted per write.


# ---------------------------------------------------------------------------
# Public functions.


def khop_neighbors(adjacency, k=2, top_k=10, *, normalization="symmetric",
                   renormalize=False, block_size=_DEFAULT_BLOCK_SIZE,
                   progress=None):
    r"""Each node's `top_k` heaviest neighbours within `k` hops.

    With `A` the weighted adjacency (`A[i, j]` = weight of the edge
    `i -> j`, self-loops used as given) and `D = diag(A 1)` its weighted
    out-degrees, the `k`-hop weights are

        S = sum_{h=1..k} M^h,  M = D^-1/2 A D^-1/2  (normalization="symmetric")
                               M = D^-1 A           (normalization="row")

    with `0^-1 = 0^-1/2 = 0` for nodes without out-edges. `S[i, j]` sums,
    over all walks of 1 to `k` steps from `i` to `j`, the product of the
    walk's entries of `M`; with "row" that is the probability that a random
    walk from `i` is at `j` after `h` steps, summed over `h <= k`. The default, "symmetric", is the normalisation of
    GCN and Graph-MLP (which adds self-loops to `A` first: do so yourself
    if you want them); it is symmetric for an undirected graph. The diagonal
    of `S` (walks back to the start) is dropped, then each row keeps its
    `top_k` largest entries.

    Computed on blocks of `block_size` source rows: `X_1 = M[rows]`,
    `X_{h+1} = X_h M`, sparse, so memory is that of the sparse `X_h`, at
    most `block_size x n` entries (the dense block) and usually far less
    (`block_size` times the number of nodes within `k` hops).

    Example: on the path `0 - 1 - 2 - 3` (unit weights, both directions),
    `khop_neighbors(A, k=2, top_k=2, normalization="row")` gives row 0 the
    neighbours `1` (weight 1, the walk `0 -> 1`) and `2` (0.5, `0 -> 1 -> 2`).

    Args:
        adjacency: the graph: a square `scipy.sparse` matrix or array
            (`n x n`, non-negative weights; rows get the ids `str(r)`) or a
            `Graph` from `load_graph_csr` (its ids are kept).
        k: the number of hops, an integer >= 1.
        top_k: neighbours kept per node, an integer >= 1.
        normalization: "symmetric" (default) or "row", see above.
        renormalize: divide each node's kept weights by their sum, so they
            sum to 1.
        block_size: source rows per block (memory vs. per-block overhead).
        progress: show a progress bar; `None` shows it on a terminal.

    Returns:
        A `Graph` with the input's rows and ids; row `i` holds up to `top_k`
        pairs `(j, S[i, j])`, `j != i`, `S[i, j] > 0`, as float32, sorted by
        weight descending, ties (equal float32 weights) towards the larger
        id (Python `str` order), the order `pack_nbrs` uses.

    Raises:
        ValueError: `k < 1`, `top_k < 1`, `block_size < 1`, an unknown
            `normalization`, a non-square matrix, negative or non-finite
            weights (the message names the argument).
        TypeError: `adjacency` is neither sparse nor a `Graph`.
        ImportError: SciPy is not installed.
    """
    k = _validation.check_int("k", k, 1)
    top_k = _validation.check_int("top_k", top_k, 1)
    block_size = _validation.check_int("block_size", block_size, 1)
    _check_choice("normalization", normalization, NORMALIZATIONS)
    sparse = _scipy_sparse()
    adjacency, ids = _adjacency_csr(adjacency, sparse)
    matrix = _normalized(adjacency, normalization)
    start_time = time.time()

    def block_scores(start, stop):
        power = matrix[start:stop]
        total = power
        for _ in range(k - 1):
            power = power @ matrix
            total = total + power
        return total

    graph = _top_k_graph(block_scores, ids, top_k, renormalize, block_size,
                         progress, desc=f"{k}-hop neighbours")
    _logger.info("Kept %d %d-hop neighbours of %d nodes (%.1f s).",
                 graph.num_edges, k, graph.num_nodes, time.time() - start_time)
    return graph


def ppr_neighbors(adjacency, alpha=0.1, top_k=10, *, tol=1e-4,
                  renormalize=False, block_size=_DEFAULT_BLOCK_SIZE,
                  progress=None):
    r"""Each node's `top_k` nodes by personalized PageRank (PPR).

    With `A` the weighted adjacency (`A[i, j]` = weight of `i -> j`) and
    `P = D^-1 A` the random-walk transition matrix (`D = diag(A 1)`; a row
    of `P` is 0 for a node without out-edges), the PPR matrix is

        Pi = alpha (I - (1 - alpha) P)^-1 = alpha sum_{t>=0} (1 - alpha)^t P^t

    `Pi[s, v]` is the probability that a walk from `s` that stops with
    probability `alpha` at each step (restarts, in PageRank terms) stops at
    `v`; `alpha` is APPNP's teleport probability. For each source `s` the
    `top_k` largest `Pi[s, v]`, `v != s`, are kept.

    Computed by sparse power iteration in residual ("push") form, on blocks
    of `block_size` sources at once. For each source, `p` (estimate) starts
    at 0 and `r` (residual) at the indicator `e_s`; each step moves every
    residual entry with `r_u > tol * max(deg_u, 1)` (`deg_u`: the number of
    out-edges of `u`) along the edges:

        p <- p + alpha r_push,   r <- (r - r_push) + (1 - alpha) r_push P

    until no entry exceeds its threshold. Pushing every entry is the power
    iteration of the series above; leaving small entries unpushed keeps `p`
    and `r` sparse. Throughout, `Pi[s] = p + r Pi`, so `0 <= Pi[s] - p`
    elementwise and `||Pi[s] - p||_1 <= ||r||_1` (logged at the end). On an
    undirected graph with unit weights each entry is off by at most
    `tol * deg_v` (Andersen, Chung & Lang, 2006); smaller `tol` is more
    accurate and costs more.

    Cost and memory per source are bounded independently of `n`: a push of
    `u` moves more than `alpha * tol * deg_u` into `p`, whose total is at
    most 1, so there are fewer than `1 / (alpha tol)` pushes touching fewer
    than `1 / (alpha tol)` edges in all, and `p` and `r` have at most
    `1 + 1 / (alpha tol)` non-zeros (`1 + 10^5` with the defaults). A block
    holds a few sparse `block_size x n` matrices (`p`, `r`, one propagation
    step), each with at most `block_size * min(n, 1 + 1 / (alpha tol))`
    non-zeros of 12 bytes: never more than a few dense blocks, and usually
    far less (about 200 MB at 100,000 nodes, 10 edges per node).

    Example: on the path `0 - 1 - 2 - 3` (unit weights, both directions),
    `ppr_neighbors(A, alpha=0.5, top_k=1, tol=1e-12)` gives row 0 the
    neighbour `1` with weight `Pi[0, 1] = 14/45`, about 0.3111.

    Args:
        adjacency: the graph: a square `scipy.sparse` matrix or array
            (`n x n`, non-negative weights; rows get the ids `str(r)`) or a
            `Graph` from `load_graph_csr` (its ids are kept).
        alpha: the restart (teleport) probability, in (0, 1).
        top_k: neighbours kept per node, an integer >= 1.
        tol: push threshold per out-edge, in (0, 1); see above.
        renormalize: divide each node's kept scores by their sum, so they
            sum to 1.
        block_size: sources per block (memory vs. per-block overhead).
        progress: show a progress bar; `None` shows it on a terminal.

    Returns:
        A `Graph` with the input's rows and ids; row `s` holds up to `top_k`
        pairs `(v, p[v])`, `v != s`, `p[v] > 0`, as float32, sorted by
        score descending, ties (equal float32 scores) towards the larger id
        (Python `str` order), the order `pack_nbrs` uses.

    Raises:
        ValueError: `alpha` not in (0, 1), `top_k < 1`, `tol` not in (0, 1),
            `block_size < 1`, a non-square matrix, negative or non-finite
            weights (the message names the argument).
        TypeError: `adjacency` is neither sparse nor a `Graph`.
        ImportError: SciPy is not installed.
    """
    _check_open_unit("alpha", alpha)
    top_k = _validation.check_int("top_k", top_k, 1)
    _check_open_unit("tol", tol)
    block_size = _validation.check_int("block_size", block_size, 1)
    sparse = _scipy_sparse()
    adjacency, ids = _adjacency_csr(adjacency, sparse)
    walk = _normalized(adjacency, "row")
    walk.data *= 1 - alpha
    threshold = tol * np.maximum(np.diff(adjacency.indptr), 1)
    residual_mass = []
    start_time = time.time()

    def block_scores(start, stop):
        estimate, residual = _ppr_block(walk, start, stop, float(alpha),
                                        threshold, sparse)
        residual_mass.append(residual)
        return estimate

    graph = _top_k_graph(block_scores, ids, top_k, renormalize, block_size,
                         progress, desc="PPR neighbours")
    residual = (np.concatenate(residual_mass) if residual_mass
                else np.zeros(1))
    _logger.info(
        "Kept %d PPR neighbours of %d nodes (%.1f s). Mass left below the "
        "push threshold, ||r||_1 per source (an L1 bound on the error of the "
        "whole PPR row, mostly its tail): mean %.2g, max %.2g.",
        graph.num_edges, graph.num_nodes, time.time() - start_time,
        residual.mean(), residual.max())
    return graph


def write_neighborhood_graph(graph, output_path, *, method="ppr", k=2,
                             alpha=0.1, top_k=10, normalization="symmetric",
                             tol=1e-4, renormalize=False,
                             add_undirected_edges=False,
                             block_size=_DEFAULT_BLOCK_SIZE, progress=None):
    """Writes the k-hop or PPR neighbourhoods of a graph as a graph TSV file.

    Reads `graph` with `load_graph_csr` (unless it already is a `Graph`),
    computes `khop_neighbors` (`method="khop"`) or `ppr_neighbors`
    (`method="ppr"`), and writes one line `source<TAB>target<TAB>weight` per
    kept neighbour: sources in row order (ids in Python `str` order for a
    TSV input), each source's neighbours by weight descending, ties towards
    the larger id. `pack_nbrs(..., max_nbrs=m)` on the result packs each
    node's first `m` of them. Weights are printed with 9 significant digits
    (`%.9g`, so a float32 weight reads back unchanged; `write_tsv_graph`'s
    `%f` would print PPR scores below 5e-7 as 0). The file is written
    atomically: a failed run leaves no output, and an existing output is
    untouched.

    Args:
        graph: any input of `load_graph_csr` (a graph TSV file, glob or list
            of them, a dict, an edge list, a `scipy.sparse` matrix) or a
            `Graph`.
        output_path: the TSV file to write.
        method: "ppr" (default) or "khop".
        k, normalization: see `khop_neighbors` (`method="khop"` only).
        alpha, tol: see `ppr_neighbors` (`method="ppr"` only).
        top_k, renormalize, block_size, progress: see either function.
        add_undirected_edges: make every edge count both ways when reading
            `graph` (as `pack_nbrs`'s flag); not allowed with a `Graph`.

    Returns:
        The neighbourhood `Graph` that was written.

    Raises:
        ValueError: invalid settings (checked before anything is read), a
            malformed input (see `load_graph_csr`), or an id containing a
            tab or line break.
        FileNotFoundError: a missing input file or output directory (the
            output is checked before any work).
        PermissionError: the output directory is not writable.
    """
    _check_choice("method", method, METHODS)
    _validation.check_int("k", k, 1)
    _check_open_unit("alpha", alpha)
    _validation.check_int("top_k", top_k, 1)
    _check_choice("normalization", normalization, NORMALIZATIONS)
    _check_open_unit("tol", tol)
    _validation.check_int("block_size", block_size, 1)
    _fileio.check_output_path(output_path, what="`output_path`")
    if isinstance(graph, graph_utils.Graph):
        if add_undirected_edges:
            raise ValueError("`add_undirected_edges` applies when reading a "
                             "graph; pass it to load_graph_csr for a Graph.")
    else:
        graph = graph_utils.load_graph_csr(
            graph, add_undirected_edges=add_undirected_edges)
    if method == "khop":
        result = khop_neighbors(graph, k, top_k, normalization=normalization,
                                renormalize=renormalize,
                                block_size=block_size, progress=progress)
    else:
        result = ppr_neighbors(graph, alpha, top_k, tol=tol,
                               renormalize=renormalize, block_size=block_size,
                               progress=progress)
    _write_tsv(result, output_path, progress)
    _logger.info("Wrote %d lines to %s.", result.num_edges, output_path)
    return result


# ---------------------------------------------------------------------------
# Checks and inputs.


def _check_open_unit(name, value):
    """Raises `ValueError` unless `value` is a real number in (0, 1)."""
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not 0 < value < 1):
        raise ValueError(f"`{name}` must be a number in (0, 1). Received: "
                         f"{name}={value!r}")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}. "
                         f"Received: {name}={value!r}")


def _scipy_sparse():
    try:
        import scipy.sparse  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise ImportError("khop_neighbors and ppr_neighbors need SciPy "
                          "(`pip install scipy`).") from e
    return scipy.sparse


def _adjacency_csr(adjacency, sparse):
    """Returns `(A, ids)`: `A` a float64 CSR array without explicit zeros.

    Raises:
        TypeError: for an input that is neither sparse nor a `Graph`.
        ValueError: non-square, negative or non-finite weights.
    """
    if isinstance(adjacency, graph_utils.Graph):
        ids = adjacency.ids
        matrix = sparse.csr_array(
            (adjacency.weights.astype(np.float64), adjacency.indices,
             adjacency.indptr), shape=(adjacency.num_nodes,) * 2)
    elif sparse.issparse(adjacency):
        shape = adjacency.shape
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(
                "`adjacency` must be square, shape (num_nodes, num_nodes). "
                f"Received shape {adjacency.shape}.")
        matrix = sparse.csr_array(adjacency, dtype=np.float64)
        matrix.sum_duplicates()
        ids = np.arange(matrix.shape[0]).astype(str)
    else:
        raise TypeError(
            "`adjacency` must be a square scipy.sparse matrix or array, or an "
            "nsl.tools.Graph (see load_graph_csr); for a dense array use "
            "scipy.sparse.csr_array(dense). Received: "
            f"{type(adjacency).__name__}")
    bad = ~np.isfinite(matrix.data) | (matrix.data < 0)
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(matrix.indptr, position, side="right") - 1)
        what = "finite" if not np.isfinite(matrix.data[position]) else ">= 0"
        raise ValueError(
            f"`adjacency` weights must be finite and >= 0; {int(bad.sum())} "
            f"are not, e.g. {str(ids[row])!r} -> "
            f"{str(ids[matrix.indices[position]])!r} with weight "
            f"{matrix.data[position]} (not {what}).")
    matrix.eliminate_zeros()
    return matrix, ids


def _normalized(adjacency, normalization):
    """`D^-1/2 A D^-1/2` ("symmetric") or `D^-1 A` ("row"), `D = diag(A 1)`."""
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    inverse = np.divide(1.0, degree, out=np.zeros_like(degree),
                        where=degree > 0)
    rows = _csr_rows(adjacency)
    result = adjacency.copy()
    if normalization == "row":
        result.data *= inverse[rows]
    else:
        half = np.sqrt(inverse)
        result.data *= half[rows] * half[adjacency.indices]
    return result


# ---------------------------------------------------------------------------
# Personalized PageRank on a block of sources.


def _ppr_block(walk, start, stop, alpha, threshold, sparse):
    """Push iteration for the sources `start..stop-1` (see `ppr_neighbors`).

    Sources are independent rows: a row with no entry above its threshold
    is final and leaves the working set, so late steps touch only the few
    sources still pushing.

    Args:
        walk: `(1 - alpha) P`, CSR `n x n`.
        start, stop: the block's sources.
        alpha: the restart probability.
        threshold: `tol * max(deg_u, 1)` for each node `u`.
        sparse: the `scipy.sparse` module.

    Returns:
        `(estimate, residual_mass)`: `estimate` a CSR `(stop - start, n)`
        array of `p`, `residual_mass` the `||r||_1` of each source.
    """
    size, n = stop - start, walk.shape[0]
    active = np.arange(size)  # Block rows of the residual's rows.
    residual = sparse.csr_array(
        (np.ones(size), np.arange(start, stop), np.arange(size + 1)),
        shape=(size, n))
    residual_mass = np.zeros(size)
    pushed_rows, pushed_cols, pushed_vals = [], [], []
    while active.size:
        push = residual.data > threshold[residual.indices]
        pushing = np.zeros(active.size, bool)
        pushing[_csr_rows(residual)[push]] = True
        if not pushing.all():
            done = residual[~pushing]
            residual_mass[active[~pushing]] = np.asarray(
                done.sum(axis=1)).ravel()
            residual, active = residual[pushing], active[pushing]
            push = residual.data > threshold[residual.indices]
        if not active.size:
            break
        pushed = _masked(residual, push)
        residual.data[push] = 0.0  # Dropped by the sum below.
        pushed_rows.append(active[_csr_rows(pushed)])
        pushed_cols.append(pushed.indices)
        pushed_vals.append(pushed.data)
        residual = residual + pushed @ walk
    estimate = sparse.csr_array(
        (alpha * np.concatenate(pushed_vals or [np.zeros(0)]),
         (np.concatenate(pushed_rows or [np.zeros(0, np.int64)]),
          np.concatenate(pushed_cols or [np.zeros(0, np.int32)]))),
        shape=(size, n))
    estimate.sum_duplicates()  # Nodes pushed more than once.
    return estimate, residual_mass


def _masked(matrix, mask):
    """A copy of a CSR matrix with only the entries where `mask` is true."""
    result = matrix.copy()
    result.data = np.where(mask, result.data, 0.0)
    result.eliminate_zeros()
    return result


def _csr_rows(matrix):
    """The row index of each stored entry of a CSR matrix."""
    return np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))


# ---------------------------------------------------------------------------
# Top-k selection and the output graph.


def _top_k_graph(block_scores, ids, top_k, renormalize, block_size, progress,
                 *, desc):
    """Assembles a `Graph` from the top-k entries of each row's scores.

    Args:
        block_scores: `block_scores(start, stop)` returns the scores of rows
            `start..stop-1` as a sparse `(stop - start, n)` matrix.
        ids, top_k, renormalize, block_size, progress: as the callers'.
        desc: the progress bar's label.
    """
    num_nodes = len(ids)
    rank = graph_utils.string_rank(ids)
    parts = []
    with _progress.progress_bar(total=num_nodes, desc=desc, unit="node",
                                enabled=progress) as bar:
        for start in range(0, num_nodes, block_size):
            stop = min(start + block_size, num_nodes)
            scores = block_scores(start, stop).tocsr()
            parts.append(_top_k_rows(scores, start, top_k, rank, renormalize))
            bar.update(stop - start)
    if parts:
        src, dst, weights = (np.concatenate(column) for column in zip(*parts))
    else:
        src, dst, weights = np.zeros(0, np.int64), np.zeros(0, np.int64), (
            np.zeros(0, np.float32))
    indptr = np.zeros(num_nodes + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=num_nodes), out=indptr[1:])
    index_dtype = np.int32 if num_nodes < 2**31 else np.int64
    return graph_utils.Graph(ids=ids, indptr=indptr,
                             indices=dst.astype(index_dtype), weights=weights)


def _top_k_rows(scores, start, top_k, rank, renormalize):
    """The top-k entries of each row of a block, the diagonal excluded.

    Scores are rounded to float32 (the `Graph` weight type) before ranking,
    so the kept entries are the first `top_k` of the row in `Graph` order:
    weight descending, then `rank` (target id order) descending.

    Args:
        scores: CSR `(block rows, n)`; row `i` is node `start + i`.
        start: the node of the block's first row.
        top_k: entries kept per row.
        rank: `string_rank` of the node ids.
        renormalize: divide the kept weights of a row by their sum.

    Returns:
        `(src, dst, weights)`: int64 node rows, int64 target rows, float32
        weights, sorted by source then in `Graph` order.
    """
    src = _csr_rows(scores) + start
    dst = scores.indices.astype(np.int64)
    weights = scores.data.astype(np.float32)
    keep = (dst != src) & (weights > 0)
    src, dst, weights = src[keep], dst[keep], weights[keep]
    src, dst, weights = _graph_order(src, dst, weights, rank)
    first = np.searchsorted(src, src)  # Each entry's row start.
    keep = np.arange(len(src)) - first < top_k
    src, dst, weights = src[keep], dst[keep], weights[keep]
    if renormalize and len(src):
        total = np.bincount(src - start, weights=weights.astype(np.float64))
        weights = (weights / total[src - start]).astype(np.float32)
        src, dst, weights = _graph_order(src, dst, weights, rank)
    return src, dst, weights


def _graph_order(src, dst, weights, rank):
    order = np.lexsort((-rank[dst], -weights, src))
    return src[order], dst[order], weights[order]


def _write_tsv(graph, path, progress):
    """Writes `graph`'s edges as lines `source<TAB>target<TAB>%.9g`.

    Rows in order, each row's edges in `Graph` order; written atomically.
    """
    for node_id in graph.ids.tolist():
        graph_utils.check_tsv_id(node_id)
    src = np.repeat(np.arange(graph.num_nodes), np.diff(graph.indptr))
    chunk = _WRITE_CHUNK
    with _fileio.atomic_output(path, "w") as f, _progress.progress_bar(
            desc="Writing graph", unit="line", total=graph.num_edges,
            enabled=progress) as bar:
        for begin in range(0, graph.num_edges, chunk):
            end = begin + chunk
            f.write("".join(
                f"{s}\t{t}\t{w:.9g}\n" for s, t, w in zip(
                    graph.ids[src[begin:end]].tolist(),
                    graph.ids[graph.indices[begin:end]].tolist(),
                    graph.weights[begin:end].tolist())))
            bar.update(min(end, graph.num_edges) - begin)


# ---------------------------------------------------------------------------
# Command line.

FLAGS = (
    _flags.Flag("graph", str, None,
                "Input graph TSV file (or glob), source<TAB>target[<TAB>"
                "weight]."),
    _flags.Flag("output", str, None,
                "Output graph TSV file, one line per kept neighbour."),
    _flags.Flag("method", str, "ppr",
                "ppr (personalized PageRank) or khop (sum of the first k "
                "powers of the normalised adjacency).", choices=METHODS),
    _flags.Flag("top_k", int, 10, "Neighbours kept per node."),
    _flags.Flag("k", int, 2, "Number of hops (--method=khop)."),
    _flags.Flag("normalization", str, "symmetric",
                "D^-1/2 A D^-1/2 (symmetric) or D^-1 A (row) "
                "(--method=khop).", choices=NORMALIZATIONS),
    _flags.Flag("alpha", float, 0.1,
                "Restart probability, in (0, 1) (--method=ppr)."),
    _flags.Flag("tol", float, 1e-4,
                "Push threshold per out-edge, in (0, 1); smaller is more "
                "accurate and slower (--method=ppr)."),
    _flags.Flag("renormalize", bool, False,
                "Scale each node's kept weights to sum to 1."),
    _flags.Flag("add_undirected_edges", bool, False,
                "Make every edge S-->T also count as T-->S (weight "
                "max(w1, w2) when both exist)."),
    _flags.Flag("block_size", int, _DEFAULT_BLOCK_SIZE,
                "Source nodes processed at once (memory vs. speed)."),
    _flags.Flag("progress", bool, True, "Show progress bars on a terminal."),
)


def configure(parser):
    """Adds the command's arguments to `parser`; returns the handler."""
    parser.add_flags(FLAGS)
    return _run


def _run(args):
    missing = [f"--{name}" for name in ("graph", "output")
               if not getattr(args, name)]
    if missing:
        raise _flags.UsageError(
            f"Missing required flag(s): {', '.join(missing)}")
    write_neighborhood_graph(
        args.graph, args.output, method=args.method, k=args.k,
        alpha=args.alpha, top_k=args.top_k, normalization=args.normalization,
        tol=args.tol, renormalize=args.renormalize,
        add_undirected_edges=args.add_undirected_edges,
        block_size=args.block_size,
        progress=None if args.progress else False)
