"""Building a similarity graph from embeddings (`nsl.tools.build_graph`)."""

import logging
import math
import numbers
import time

import numpy as np

from neural_structured_learning import configs as nsl_configs
from neural_structured_learning._core import progress as _progress
from neural_structured_learning._core import validation as _validation
from neural_structured_learning.tools import _embeddings
from neural_structured_learning.tools import _fileio
from neural_structured_learning.tools import _similarity
from neural_structured_learning.tools import graph_utils

_logger = logging.getLogger(__name__)

METHODS = ("exact", "ann", "lsh")
_CONFIG_FIELDS = ("id_feature_name", "embedding_feature_name",
                  "similarity_threshold", "lsh_splits", "lsh_rounds",
                  "random_seed")
_MAX_LSH_SPLITS = 62


def build_graph_from_config(embedding_files, output_graph_path,
                            graph_builder_config, *, top_k=None, method=None,
                            num_threads=None, ef_search=None, progress=None):
    """Builds a similarity graph from embeddings and writes it as TSV.

    Each input example is a node with an id and a dense embedding `v`. The
    weight of a pair of nodes is their cosine similarity, computed in
    float64 as NSL 1.4 does:

        w(a, b) = dot(v_a / max(|v_a|, 1e-6), v_b / max(|v_b|, 1e-6))

    Which pairs become edges depends on `method` and `top_k`:

    * `method="exact"` (default), `top_k=None`: every pair with
      `w >= similarity_threshold`, found by blocked float32 matrix products
      (NSL 1.4's all-pairs graph, same edges and weights).
    * `method="lsh"` (default when `lsh_splits > 0`): NSL 1.4's random-
      hyperplane LSH; with the same `random_seed` it finds the same edges as
      1.4 (the hyperplanes come from `numpy.random.RandomState(random_seed)`
      in 1.4's order).
    * `top_k=k`: each node's `k` most similar other nodes (ties towards the
      larger id), kept if `w >= similarity_threshold`; `method="exact"`
      searches exhaustively (FAISS `IndexFlatIP`), `method="ann"` uses an
      HNSW index (FAISS `IndexHNSWFlat`) and logs its recall against exact
      search on 1,000 sampled nodes. A node can get more than `k` edges,
      since an edge is kept when either end selected it.

    Self-pairs are never edges. The output is a TSV file with two lines per
    undirected edge, `a<TAB>b<TAB>w` and `b<TAB>a<TAB>w` (`w` printed with
    `%f`), sorted by source id then target id (Python `str` order), so the
    same inputs give byte-identical files. It is written atomically.

    Input files are TFRecord files of `tf.train.Example` (an
    `id_feature_name` `bytes_list` and an `embedding_feature_name`
    `float_list`, as in 1.4), or Parquet (`.parquet`), `.npz` or `.npy`
    files (see `docs/tools.md`). Examples missing either feature are skipped
    with a logged error; for repeated ids the last embedding wins.

    Args:
        embedding_files: a file name, a glob, or a list of them.
        output_graph_path: the TSV file to write.
        graph_builder_config: an object with the attributes of
            `nsl.configs.GraphBuilderConfig`: `id_feature_name`,
            `embedding_feature_name`, `similarity_threshold`, `lsh_splits`,
            `lsh_rounds`, `random_seed`.
        top_k: neighbours per node, or `None` for a threshold graph.
        method: "exact", "ann" or "lsh"; `None` picks "lsh" if
            `lsh_splits > 0`, else "exact".
        num_threads: threads for FAISS (`top_k` searches), default all.
        ef_search: HNSW search breadth for `method="ann"` (higher: better
            recall, slower); default `max(64, 2 * (top_k + 9))`.
        progress: show progress bars; `None` shows them on a terminal.

    Raises:
        ValueError: for invalid settings (checked before reading any file),
            embeddings of different widths or with non-finite values, or
            inputs with no embedding.
        FileNotFoundError: if an input file or the output directory does
            not exist (the output is checked before any work).
        PermissionError: if the output directory is not writable.
        TFRecordError: for a corrupt TFRecord input.
    """
    config = {}
    for name in _CONFIG_FIELDS:
        if not hasattr(graph_builder_config, name):
            raise TypeError(
                "`graph_builder_config` must have the attributes of "
                f"nsl.configs.GraphBuilderConfig; {name!r} is missing from "
                f"{graph_builder_config!r}.")
        config[name] = getattr(graph_builder_config, name)
    method = _check_settings(config, top_k, method, num_threads, ef_search)
    _fileio.check_output_path(output_graph_path, what="`output_graph_path`")
    start = time.time()
    ids, vectors = _embeddings.read_embeddings(
        embedding_files, id_feature_name=config["id_feature_name"],
        embedding_feature_name=config["embedding_feature_name"],
        progress=progress)
    _logger.info("Read %d embeddings of dimension %d (%.1f s).", len(ids),
                 vectors.shape[1], time.time() - start)
    emb = _similarity.Embeddings(vectors)
    del vectors
    threshold = float(config["similarity_threshold"])
    for node_id in ids:
        graph_utils.check_tsv_id(node_id)
    rank = graph_utils.string_rank(ids)
    if method == "lsh":
        i, j, w = _similarity.lsh_pairs(emb, threshold, config["lsh_splits"],
                                        config["lsh_rounds"],
                                        config["random_seed"], progress)
    elif top_k is None:
        if len(ids) > 200_000:
            _logger.warning(
                "Comparing all %d x %d pairs exactly; for large inputs "
                "consider top_k=... with method='ann'.", len(ids), len(ids))
        i, j, w = _similarity.threshold_pairs(emb, threshold, None, progress)
    else:
        i, j, w = _similarity.knn_pairs(
            emb, top_k, threshold, rank, method=method,
            num_threads=num_threads, ef_search=ef_search, progress=progress)
    _write_graph(output_graph_path, ids, rank, i, j, w, progress)
    _logger.info("Wrote %d undirected edges (%d lines) among %d nodes to %s "
                 "(%.1f s in all).", len(i), 2 * len(i), len(ids),
                 output_graph_path, time.time() - start)


def build_graph(embedding_files, output_graph_path, similarity_threshold=0.8,
                id_feature_name="id", embedding_feature_name="embedding",
                lsh_splits=0, lsh_rounds=2, random_seed=None, *, top_k=None,
                method=None, num_threads=None, ef_search=None,
                progress=None):
    """Like `build_graph_from_config`, with the settings as arguments.

    Same parameters and defaults as NSL 1.4 (including `lsh_rounds=2`, while
    `GraphBuilderConfig` defaults to 1), plus the keyword-only options of
    `build_graph_from_config`.

    Args:
        embedding_files: a file name, a glob, or a list of them.
        output_graph_path: the TSV file to write.
        similarity_threshold: minimum cosine similarity of an edge.
        id_feature_name: name of the id feature.
        embedding_feature_name: name of the embedding feature.
        lsh_splits: LSH hyperplanes per round; 0 disables LSH.
        lsh_rounds: LSH rounds when `lsh_splits > 0`.
        random_seed: seed of the LSH hyperplanes.
        top_k, method, num_threads, ef_search, progress: see
            `build_graph_from_config`.

    Raises:
        ValueError: see `build_graph_from_config`.
    """
    build_graph_from_config(
        embedding_files, output_graph_path,
        nsl_configs.GraphBuilderConfig(
            id_feature_name=id_feature_name,
            embedding_feature_name=embedding_feature_name,
            similarity_threshold=similarity_threshold, lsh_splits=lsh_splits,
            lsh_rounds=lsh_rounds, random_seed=random_seed),
        top_k=top_k, method=method, num_threads=num_threads,
        ef_search=ef_search, progress=progress)


def _check_settings(config, top_k, method, num_threads, ef_search):
    """Validates all settings; returns the method to use."""
    splits, rounds = config["lsh_splits"], config["lsh_rounds"]
    _validation.check_int("lsh_splits", splits, 0)
    if splits > _MAX_LSH_SPLITS:
        raise ValueError(f"`lsh_splits` must be <= {_MAX_LSH_SPLITS}. "
                         f"Received: lsh_splits={splits}")
    if splits > 0:
        _validation.check_int("lsh_rounds", rounds, 1)
    threshold = config["similarity_threshold"]
    if not isinstance(threshold, numbers.Real) or math.isnan(threshold):
        raise ValueError("`similarity_threshold` must be a number. Received: "
                         f"similarity_threshold={threshold!r}")
    for name, value, minimum in (("random_seed", config["random_seed"], 0),
                                 ("top_k", top_k, 1),
                                 ("num_threads", num_threads, 1),
                                 ("ef_search", ef_search, 1)):
        _validation.check_int(name, value, minimum, allow_none=True)
    for name in ("id_feature_name", "embedding_feature_name"):
        if not isinstance(config[name], str) or not config[name]:
            raise ValueError(f"`{name}` must be a non-empty string. "
                             f"Received: {name}={config[name]!r}")
    if method is None:
        method = "lsh" if splits > 0 else "exact"
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}. Received: "
                         f"method={method!r}")
    if method == "lsh":
        if splits == 0:
            raise ValueError("method='lsh' needs `lsh_splits` >= 1. "
                             "Received: lsh_splits=0")
        if top_k is not None:
            raise ValueError("method='lsh' builds a threshold graph; it does "
                             f"not take `top_k`. Received: top_k={top_k}")
    elif splits > 0:
        raise ValueError(f"`lsh_splits` applies to method='lsh' only. "
                         f"Received: lsh_splits={splits}, method={method!r}")
    if method == "ann" and top_k is None:
        raise ValueError("method='ann' builds a k-nearest-neighbour graph; "
                         "pass `top_k` (e.g. top_k=10).")
    return method


def _write_graph(path, ids, rank, i, j, w, progress):
    """Writes both directions of each edge, sorted by (source, target) id."""
    sources = np.concatenate([i, j])
    targets = np.concatenate([j, i])
    order = np.lexsort((rank[targets], rank[sources]))
    # Each weight is printed once for its two lines.
    weight_text = [f"{x:f}" for x in np.asarray(w, np.float64).tolist()]
    num_edges = max(len(w), 1)
    chunk = 1 << 16
    with _fileio.atomic_output(path, "w") as f, _progress.progress_bar(
            desc="Writing graph", unit="line", total=len(order),
            enabled=progress) as bar:
        for start in range(0, len(order), chunk):
            part = order[start:start + chunk]
            f.write("".join([
                f"{ids[s]}\t{ids[t]}\t{weight_text[e]}\n"
                for s, t, e in zip(sources[part].tolist(),
                                   targets[part].tolist(),
                                   (part % num_edges).tolist())]))
            bar.update(len(part))
