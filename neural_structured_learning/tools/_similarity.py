"""Similar pairs of embeddings: exact blocked search, LSH and FAISS kNN.

All searches screen candidates with float32 inner products of the unit
vectors, then recompute each candidate's cosine similarity in float64 as NSL
1.4 does (`dot(v / max(|v|, 1e-6), u / max(|u|, 1e-6))`) and apply the exact
threshold to that value. So edge sets and weights do not depend on BLAS
rounding, thread counts or the index, and match 1.4 to the printed 6
decimals.
"""

import contextlib
import logging
import time

import numpy as np

from neural_structured_learning._core import progress as _progress

_logger = logging.getLogger(__name__)

MIN_NORM = 1e-6  # NSL 1.4's floor on the norm when normalising.
# Products are computed in square tiles of this many rows and columns (4 MB
# of float32): a tile and its mask stay in cache while they are screened,
# which made exact search 1.6-2x faster than row blocks of 64 MB (10,000 x
# 64-d, one thread); see docs/tools.md.
_TILE = 1024
_ROW_CHUNK = 1 << 16
_KNN_EXTRA = 8  # candidates fetched beyond k before the float64 re-ranking


class Embeddings:
    """Embeddings with their float64 norms and float32 unit vectors.

    Attributes:
        vectors: float32 array `(n, d)` as read.
        norms: float64 array `(n,)`, `max(|v|, 1e-6)` computed in float64.
        unit: float32 array `(n, d)`, `vectors / norms` rounded to float32.
    """

    def __init__(self, vectors):
        self.vectors = np.ascontiguousarray(vectors, np.float32)
        n = len(self.vectors)
        self.norms = np.empty(n, np.float64)
        self.unit = np.empty_like(self.vectors)
        for start in range(0, n, _ROW_CHUNK):
            block = self.vectors[start:start + _ROW_CHUNK].astype(np.float64)
            norms = np.maximum(np.linalg.norm(block, axis=1), MIN_NORM)
            self.norms[start:start + _ROW_CHUNK] = norms
            self.unit[start:start + _ROW_CHUNK] = block / norms[:, None]

    def __len__(self):
        return len(self.vectors)

    @property
    def dim(self):
        return self.vectors.shape[1]

    def cosine(self, i, j):
        """Float64 cosine similarity of the pairs `(i[k], j[k])`."""
        out = np.empty(len(i), np.float64)
        for start in range(0, len(i), _ROW_CHUNK):
            a = self.unit64(i[start:start + _ROW_CHUNK])
            b = self.unit64(j[start:start + _ROW_CHUNK])
            out[start:start + _ROW_CHUNK] = np.einsum("ij,ij->i", a, b)
        return out

    def unit64(self, rows):
        """Float64 unit vectors of `rows`, as NSL 1.4 normalises them."""
        return self.vectors[rows].astype(np.float64) / self.norms[rows, None]

    def screening_margin(self):
        """An upper bound on |float32 dot - exact dot| for unit vectors.

        The classic bound for a length-d float32 dot product is
        `d * 2**-24 * sum|x_i y_i| <= d * 2**-24` for unit vectors; the
        rounding of the unit vectors adds about `2**-23`; we double it all.
        """
        return 2.0 * (self.dim + 2) * 2.0**-24


def threshold_pairs(emb, threshold, members=None, progress=None):
    """All pairs `i < j` with cosine similarity >= `threshold` (exact).

    Computes `unit[rows] @ unit[cols].T` tile by tile over the upper
    triangle (tiles of `_TILE` x `_TILE`), keeps entries >=
    `threshold - margin`, then keeps the candidates whose float64 cosine is
    >= `threshold`.

    Args:
        emb: an `Embeddings`.
        threshold: the similarity threshold.
        members: optional sorted int array restricting the search to those
            rows (an LSH bucket); default all rows.
        progress: progress bar switch (see `_progress.progress_bar`).

    Returns:
        `(i, j, w)`: int64 arrays with `i < j` (row indices into `emb`),
        sorted by `(i, j)`, and float64 weights.
    """
    unit = emb.unit if members is None else emb.unit[members]
    n = len(unit)
    tile = max(1, min(n, _TILE))
    screen = threshold - emb.screening_margin()
    found_i, found_j = [], []
    # One product buffer and one mask for all tiles: fresh arrays per tile
    # would cost page faults (the kernel zeroes each new page).
    products = np.empty(tile * tile, np.float32)
    mask = np.empty(tile * tile, bool)
    with _progress.progress_bar(total=n, desc="Exact search", unit="node",
                                enabled=progress) as bar:
        for r0 in range(0, n, tile):
            rows = unit[r0:r0 + tile]
            for c0 in range(r0, n, tile):
                cols = unit[c0:c0 + tile]
                width = len(cols)
                block = products[:len(rows) * width].reshape(len(rows), width)
                np.matmul(rows, cols.T, out=block)
                hits = mask[:block.size]
                np.greater_equal(block.reshape(-1), screen, out=hits)
                # flatnonzero + divmod is several times faster than 2-D
                # nonzero.
                r, c = np.divmod(np.flatnonzero(hits), width)
                if c0 == r0:  # A tile on the diagonal: its upper triangle.
                    upper = c > r
                    r, c = r[upper], c[upper]
                found_i.append(r + r0)
                found_j.append(c + c0)
            bar.update(len(rows))
    i = np.concatenate(found_i) if found_i else np.zeros(0, np.int64)
    j = np.concatenate(found_j) if found_j else np.zeros(0, np.int64)
    order = np.lexsort((j, i))
    i, j = i[order], j[order]
    if members is not None:
        i, j = members[i], members[j]
    w = emb.cosine(i, j)
    keep = w >= threshold
    return i[keep].astype(np.int64), j[keep].astype(np.int64), w[keep]


def lsh_pairs(emb, threshold, splits, rounds, seed, progress=None):
    """Pairs found by NSL 1.4's random-hyperplane LSH, with 1.4's RNG stream.

    Each round draws `M = RandomState(seed).rand(splits, d) * 2 - 1` (one
    generator for all rounds, one draw per round, as 1.4's global
    `np.random.seed(seed)` + `np.random.rand`), puts row `e` in bucket
    `sum_i [(M @ unit64(e))_i > 0] << i`, and compares all pairs inside each
    bucket exactly. The result is the union over rounds.

    Args:
        emb: an `Embeddings`.
        threshold: the similarity threshold.
        splits: hyperplanes per round (>= 1).
        rounds: number of rounds (>= 1).
        seed: seed of `numpy.random.RandomState`, or `None` for OS entropy.
        progress: progress bar switch.

    Returns:
        `(i, j, w)` as `threshold_pairs`, without duplicates.
    """
    rng = np.random.RandomState(seed)
    weights = 1 << np.arange(splits, dtype=np.int64)
    found = []
    with _progress.progress_bar(total=rounds, desc="LSH rounds", unit="round",
                                enabled=progress) as bar:
        for lsh_round in range(rounds):
            planes = rng.rand(splits, emb.dim) * 2 - 1
            buckets = np.empty(len(emb), np.int64)
            for start in range(0, len(emb), _ROW_CHUNK):
                rows = np.arange(start, min(start + _ROW_CHUNK, len(emb)))
                above = emb.unit64(rows) @ planes.T > 0.0
                buckets[rows] = above @ weights
            order = np.argsort(buckets, kind="stable")
            bounds = np.flatnonzero(np.diff(buckets[order])) + 1
            groups = np.split(order, bounds)
            _logger.info("LSH round %d: %d bucket(s).", lsh_round, len(groups))
            for members in groups:
                if len(members) > 1:
                    found.append(threshold_pairs(emb, threshold,
                                                 np.sort(members), False))
            bar.update(1)
    return unique_pairs(*_concat(found))


def knn_pairs(emb, k, threshold, rank, *, method, hnsw_m=32,
              ef_construction=40, ef_search=None, num_threads=None,
              progress=None):
    """Edges from each node to its `k` most similar nodes, via FAISS.

    Each node's `k + 8` nearest neighbours by float32 inner product of the
    unit vectors are fetched (`faiss.IndexFlatIP` for `method="exact"`,
    `faiss.IndexHNSWFlat` for `method="ann"`), re-scored in float64, and the
    `k` best kept (ties towards the larger `rank`); edges below `threshold`
    are dropped. Self-matches are never edges.

    Args:
        emb: an `Embeddings`.
        k: neighbours per node (>= 1).
        threshold: minimum similarity of an edge.
        rank: int array; `rank[a] > rank[b]` when id a > id b.
        method: "exact" or "ann".
        hnsw_m, ef_construction, ef_search: HNSW parameters (`ann` only);
            `ef_search=None` means `max(64, 2 * (k + 9))`, twice the fetch.
        num_threads: OpenMP threads for FAISS, or `None` for its default.
        progress: progress bar switch.

    Returns:
        `(i, j, w)` with `i < j`, each undirected pair once.
    """
    faiss = _import_faiss()
    n = len(emb)
    fetch = min(n, k + 1 + _KNN_EXTRA)
    start_time = time.time()
    with _faiss_threads(faiss, num_threads):
        if method == "exact":
            index = faiss.IndexFlatIP(emb.dim)
            index.add(emb.unit)
        else:
            index = faiss.IndexHNSWFlat(emb.dim, hnsw_m,
                                        faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.hnsw.efSearch = ef_search or max(64, 2 * fetch)
            with _progress.progress_bar(desc="Building HNSW index", unit="node",
                                        total=n, enabled=progress) as bar:
                # Adding in fixed-size batches keeps the (deterministic) FAISS
                # build identical run to run while showing progress.
                step = max(_ROW_CHUNK, -(-n // 20))
                for start in range(0, n, step):
                    index.add(emb.unit[start:start + step])
                    bar.update(min(step, n - start))
            _logger.info("Built the HNSW index in %.1f s.",
                         time.time() - start_time)
        start_time = time.time()
        found = []
        batch = 1 << 14
        with _progress.progress_bar(desc=f"Searching ({method})", unit="node",
                                    total=n, enabled=progress) as bar:
            for start in range(0, n, batch):
                rows = np.arange(start, min(start + batch, n))
                _, candidates = index.search(emb.unit[rows], fetch)
                found.append(_top_k(emb, rows, candidates, k, threshold, rank))
                bar.update(len(rows))
        _logger.info("Searched the %d nearest neighbours of %d nodes in %.1f s.",
                     fetch - 1, n, time.time() - start_time)
        i, j, w = _concat(found)
        if method == "ann":
            _log_recall(faiss, emb, i, j, k, threshold, rank, fetch)
    return unique_pairs(np.minimum(i, j), np.maximum(i, j), w)


def _log_recall(faiss, emb, i, j, k, threshold, rank, fetch, sample=1000):
    """Logs the ANN edges' recall against exact search on sampled nodes.

    For `sample` nodes (fixed seed), the edges exact search would choose
    (same `k`, threshold and tie rule) are compared with those found; costs
    one brute-force search of `sample` queries.
    """
    rows = np.sort(np.random.RandomState(0).choice(
        len(emb), min(sample, len(emb)), replace=False))
    _, candidates = faiss.knn(emb.unit[rows], emb.unit, fetch,
                              metric=faiss.METRIC_INNER_PRODUCT)
    exact_i, exact_j, _ = _top_k(emb, rows, candidates, k, threshold, rank)
    in_sample = np.isin(i, rows)
    n = len(emb)
    found = set((i[in_sample] * n + j[in_sample]).tolist())
    exact = (exact_i * n + exact_j).tolist()
    if exact:
        recall = sum(edge in found for edge in exact) / len(exact)
        _logger.info("ANN recall of the top-%d edges, measured against exact "
                     "search on %d sampled nodes: %.2f%%.", k, len(rows),
                     100 * recall)


def _top_k(emb, rows, candidates, k, threshold, rank):
    """Re-scores candidates in float64 and keeps each row's k best edges."""
    rows2d = np.broadcast_to(rows[:, None], candidates.shape)
    valid = (candidates >= 0) & (candidates != rows2d)
    cand = np.where(valid, candidates, 0)
    w = np.full(candidates.shape, -np.inf)
    w[valid] = emb.cosine(rows2d[valid], cand[valid])
    order = np.lexsort((-rank[cand].ravel(), -w.ravel(), rows2d.ravel()))
    order = order.reshape(candidates.shape)[:, :k]
    src, dst, w = rows2d.ravel()[order], cand.ravel()[order], w.ravel()[order]
    keep = np.isfinite(w) & (w >= threshold)
    return src[keep], dst[keep], w[keep]


def unique_pairs(i, j, w):
    """Drops repeated `(i, j)` pairs (their weights are equal)."""
    if not len(i):
        return i, j, w
    key = i * (int(max(i.max(), j.max())) + 1) + j
    _, first = np.unique(key, return_index=True)
    return i[first], j[first], w[first]


def _concat(parts):
    if not parts:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float64)
    return tuple(np.concatenate(column) for column in zip(*parts))


def _import_faiss():
    try:
        import faiss  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise ImportError(
            "Top-k and approximate graph building need FAISS: pip install "
            "'neural-structured-learning-keras[tools]' (or faiss-cpu>=1.15)."
        ) from e
    return faiss


@contextlib.contextmanager
def _faiss_threads(faiss, num_threads):
    if num_threads is None:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(num_threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)
