"""`build_graph` as an Apache Beam pipeline (`nsl.tools.beam.build_graph`)."""

import logging
import zlib

import apache_beam as beam
import numpy as np

from neural_structured_learning import configs as nsl_configs
from neural_structured_learning._core import validation as _validation
from neural_structured_learning.tools import _graph_builder
from neural_structured_learning.tools.beam import _common

_logger = logging.getLogger(__name__)
_METRICS = "nsl.beam.build_graph"
_KNN_EXTRA = 8  # as tools._similarity: candidates beyond k before re-ranking


def build_graph(embedding_files, output_graph_path, similarity_threshold=0.8,
                id_feature_name="id", embedding_feature_name="embedding",
                lsh_splits=0, lsh_rounds=2, random_seed=None, *, top_k=None,
                method=None, num_threads=None, ef_search=None, num_shards=8,
                output_shards=1, runner=None, pipeline_options=None):
    """`nsl.tools.build_graph` as a Beam pipeline, on sharded embeddings.

    Same settings and output format as `nsl.tools.build_graph` (see
    `build_graph_from_config`). The embeddings are split into `num_shards`
    shards by a hash of the id, then:

    * threshold graph (`top_k=None`, `method="exact"`): every pair of shards
      is compared exactly by blocks (float32 screening, float64 cosine), as
      the single-machine tool does within one set: the same edges and
      weights, so a byte-identical TSV.
    * `top_k` with `method="exact"`: each node's `top_k + 8` best candidates
      in every shard (FAISS `IndexFlatIP`), re-scored in float64 and merged
      per node into its `top_k` best (ties towards the larger id). Equal to
      the single-machine graph except where more than 8 candidates tie (to
      float32 rounding) at the k-th place, where both are arbitrary.
    * `method="ann"`: an HNSW index per shard instead; approximate, like
      the single-machine `ann` (the edges found differ from it; recall is
      at least as good since each shard's index is smaller).
    * `method="lsh"`: NSL 1.4's hyperplanes (same `random_seed`, same
      buckets), each bucket compared exactly on one worker: the same graph.

    The TSV (two lines per edge, sorted by source then target id) is
    `output_graph_path`, or with `output_shards=N` the files
    `output_graph_path-0000i-of-0000N` whose concatenation is that file. It
    is written to a temporary directory and moved into place at the end.

    Args:
        embedding_files, output_graph_path, similarity_threshold,
            id_feature_name, embedding_feature_name, lsh_splits,
            lsh_rounds, random_seed, top_k, method, num_threads, ef_search:
            as for `nsl.tools.build_graph` (`num_threads`: FAISS threads
            per worker). Paths may be on any Beam file system.
        num_shards: embedding shards (the threshold search runs
            `num_shards * (num_shards + 1) / 2` block tasks, the top-k
            search `num_shards**2`); each task holds two shards.
        output_shards: number of output TSV files.
        runner: a Beam runner name; `None` uses `pipeline_options`'s, else
            the DirectRunner.
        pipeline_options: Beam flags (a list), a dict, or
            `PipelineOptions`.

    Returns:
        The Beam `PipelineResult`.

    Raises:
        ValueError, FileNotFoundError, PermissionError: for invalid
            settings or paths, checked before the pipeline starts.
        PipelineError: when the pipeline fails (e.g. a corrupt input,
            embeddings of different widths, no embedding); the message
            gives the worker's error.
    """
    config = nsl_configs.GraphBuilderConfig(
        id_feature_name=id_feature_name,
        embedding_feature_name=embedding_feature_name,
        similarity_threshold=similarity_threshold, lsh_splits=lsh_splits,
        lsh_rounds=lsh_rounds, random_seed=random_seed)
    settings = {name: getattr(config, name)
                for name in _graph_builder._CONFIG_FIELDS}  # pylint: disable=protected-access
    method = _graph_builder._check_settings(  # pylint: disable=protected-access
        settings, top_k, method, num_threads, ef_search)
    _validation.check_int("num_shards", num_shards, 1)
    _validation.check_int("output_shards", output_shards, 1)
    output = _common.check_output(output_graph_path,
                                  what="`output_graph_path`")
    files = _common.expand(embedding_files, what="`embedding_files`")
    inputs = []
    npy_rows = 0
    for ordinal, path in enumerate(files):
        first_id = None
        if path.lower().endswith(".npy"):
            first_id = npy_rows
            npy_rows += _npy_rows(path)
        inputs.append((ordinal, path, first_id))
    if method == "lsh" and random_seed is None:
        random_seed = int(np.random.SeedSequence().generate_state(1)[0])
    threshold = float(similarity_threshold)
    options = _common.make_options(runner, pipeline_options)
    temp_dir = _common.temp_dir_for(output)
    read_args = (id_feature_name, embedding_feature_name)

    def build(p):
        rows = (p
                | "EmbeddingFiles" >> beam.Create(inputs)
                | "SpreadFiles" >> beam.Reshuffle()
                | "ReadEmbeddings" >> beam.FlatMap(_read_file, *read_args)
                | "LastPerId" >> beam.CombinePerKey(_last)
                | "CheckIds" >> beam.Map(_check_id))
        widths = (rows
                  | "Widths" >> beam.Map(lambda kv: len(kv[1][1]))
                  | "DistinctWidths" >> beam.combiners.ToSet())
        count = rows | "CountNodes" >> beam.combiners.Count.Globally()
        shards = (rows
                  | "ShardKey" >> beam.Map(
                      lambda kv: (_shard_of(kv[0], num_shards), kv))
                  | "GroupShards" >> beam.GroupByKey()
                  | "MakeShards" >> beam.Map(
                      _make_shard, widths=beam.pvalue.AsSingleton(widths)))
        if method == "lsh":
            edges = (shards
                     | "Buckets" >> beam.FlatMap(
                         _lsh_buckets, lsh_splits, lsh_rounds, random_seed)
                     | "GroupBuckets" >> beam.GroupByKey()
                     | "BucketPairs" >> beam.FlatMap(_bucket_pairs, threshold)
                     | "Dedupe" >> beam.CombinePerKey(max))
        elif top_k is None:
            edges = (shards
                     | "PairShards" >> beam.FlatMap(_pair_keys, num_shards,
                                                   False)
                     | "GroupPairs" >> beam.GroupByKey()
                     | "ThresholdPairs" >> beam.FlatMap(_threshold_pairs,
                                                       threshold))
        else:
            edges = (shards
                     | "PairShards" >> beam.FlatMap(_pair_keys, num_shards,
                                                   True)
                     | "GroupPairs" >> beam.GroupByKey()
                     | "Candidates" >> beam.FlatMap(
                         _knn_candidates, top_k, method, num_threads,
                         ef_search)
                     | "GroupCandidates" >> beam.GroupByKey()
                     | "TopK" >> beam.FlatMap(_top_k, top_k, threshold)
                     | "Dedupe" >> beam.CombinePerKey(max))
        lines = edges | "Lines" >> beam.FlatMap(_lines)
        _common.write_sorted(lines, output, output_shards, "tsv", temp_dir,
                             check=_NeedEmbeddings(files, id_feature_name,
                                                   embedding_feature_name),
                             check_value=count)

    result = _common.run_pipeline(build, options, [temp_dir])
    _logger.info("Wrote %d undirected edges to %s.",
                 _common.counter_value(result, _METRICS, "edges"), output)
    return result


class _NeedEmbeddings:
    """The commit check: at least one embedding (as the 1-machine tool)."""

    def __init__(self, files, id_name, embedding_name):
        self._args = files, id_name, embedding_name

    def __call__(self, count):
        if not count:
            files, id_name, embedding_name = self._args
            raise ValueError(
                f"No embeddings found in {files!r} (looked for the id "
                f"{id_name!r} and the embedding {embedding_name!r}).")


def _npy_rows(path):
    """Rows of a `.npy` file, from its header (for the `str(i)` ids)."""
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
    with FileSystems.open(path, compression_type="uncompressed") as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, _ = read(f)
    if len(shape) != 2:
        raise ValueError(f"The .npy file {path!r} must hold a 2-D array "
                         f"(num_nodes, dim). Received shape {shape}.")
    return shape[0]


def _read_file(element, id_name, embedding_name):
    """Yields `(id, (ordinal, vector))` for the embeddings of one file."""
    # pylint: disable=import-outside-toplevel
    from neural_structured_learning.tools import _embeddings
    ordinal, path, first_id = element
    with _common.local_copy(path) as local:
        if first_id is not None:  # .npy: ids continue across .npy files
            vectors = np.load(local, mmap_mode="r", allow_pickle=False)
            if vectors.ndim != 2:
                raise ValueError(
                    f"The .npy file {path!r} must hold a 2-D array "
                    f"(num_nodes, dim). Received shape {vectors.shape}.")
            vectors = np.asarray(vectors, np.float32)
            bad = ~np.isfinite(vectors).all(axis=1)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"The embedding of id {str(first_id + i)!r} contains a "
                    f"NaN or infinite value ({int(bad.sum())} such rows).")
            ids = [str(first_id + i) for i in range(len(vectors))]
        else:
            try:
                ids, vectors = _embeddings.read_embeddings(
                    [local], id_feature_name=id_name,
                    embedding_feature_name=embedding_name, progress=False)
            except ValueError as e:
                if str(e).startswith("No embeddings found"):
                    return  # an empty shard; checked for all files at the end
                raise
    for node_id, vector in zip(ids, vectors):
        yield node_id, (ordinal, np.array(vector, np.float32))


def _last(values):
    """The embedding of the last file (the last one wins, as in 1.4)."""
    return max(values, key=lambda v: v[0])


def _check_id(element):
    from neural_structured_learning.tools import graph_utils  # pylint: disable=import-outside-toplevel
    graph_utils.check_tsv_id(element[0])
    return element


def _shard_of(node_id, num_shards):
    return zlib.crc32(node_id.encode("utf-8")) % num_shards


def _make_shard(element, widths):
    """`(shard, (ids, float32 vectors))`, ids sorted."""
    shard, rows = element
    if len(widths) > 1:
        raise ValueError(f"The embeddings have different widths: "
                         f"{sorted(widths)}; expected one width.")
    rows = sorted(rows, key=lambda kv: kv[0])
    ids = [node_id for node_id, _ in rows]
    vectors = np.stack([vector for _, (_, vector) in rows])
    return shard, (ids, vectors)


def _pair_keys(element, num_shards, ordered):
    """Sends each shard to the block tasks that need it.

    Unordered (threshold): task `(a, b)`, `a <= b`, gets shards a and b.
    Ordered (top-k): task `(q, d)` searches shard q's nodes in shard d.
    """
    shard, data = element
    for other in range(num_shards):
        if ordered:
            yield (shard, other), ("query", data)
            if other != shard:
                yield (other, shard), ("data", data)
        else:
            pair = (min(shard, other), max(shard, other))
            yield pair, ("a" if shard == pair[0] else "b", data)


def _embeddings(*parts):
    """`Embeddings` of the concatenated vectors, with the row offsets."""
    from neural_structured_learning.tools import _similarity  # pylint: disable=import-outside-toplevel
    ids = [node_id for part_ids, _ in parts for node_id in part_ids]
    emb = _similarity.Embeddings(np.concatenate([v for _, v in parts]))
    return ids, emb


def _threshold_pairs(element, threshold):
    """Exact pairs with cosine >= threshold inside a shard or across two."""
    from neural_structured_learning.tools import _similarity  # pylint: disable=import-outside-toplevel
    (a, b), parts = element
    parts = dict(parts)
    if "a" not in parts or (a != b and "b" not in parts):
        return  # an empty shard
    if a == b:
        ids, emb = _embeddings(parts["a"])
        i, j, w = _similarity.threshold_pairs(emb, threshold, None, False)
    else:
        ids, emb = _embeddings(parts["a"], parts["b"])
        i, j, w = _cross_pairs(emb, len(parts["a"][0]), threshold)
    metric = beam.metrics.Metrics.counter(_METRICS, "edges")
    metric.inc(len(i))
    for x, y, weight in zip(i.tolist(), j.tolist(), w.tolist()):
        yield (ids[x], ids[y]), weight


def _cross_pairs(emb, num_a, threshold):
    """Pairs (row < num_a, row >= num_a) with cosine >= threshold.

    The single-machine screening (float32 products >= threshold - margin,
    then the float64 cosine), between two blocks of rows.
    """
    block_elements = 1 << 24
    unit_a, unit_b = emb.unit[:num_a], emb.unit[num_a:]
    rows_per_block = max(1, block_elements // max(len(unit_b), 1))
    screen = threshold - emb.screening_margin()
    found_i, found_j = [], []
    for start in range(0, num_a, rows_per_block):
        block = unit_a[start:start + rows_per_block] @ unit_b.T
        r, c = np.divmod(np.flatnonzero(block >= screen), block.shape[1])
        found_i.append(r + start)
        found_j.append(c + num_a)
    i = np.concatenate(found_i) if found_i else np.zeros(0, np.int64)
    j = np.concatenate(found_j) if found_j else np.zeros(0, np.int64)
    w = emb.cosine(i, j)
    keep = w >= threshold
    return i[keep], j[keep], w[keep]


def _knn_candidates(element, k, method, num_threads, ef_search):
    """Per query node of shard q: its best candidates in shard d, float64."""
    from neural_structured_learning.tools import _similarity  # pylint: disable=import-outside-toplevel
    (q, d), parts = element
    parts = dict(parts)
    same = q == d
    if "query" not in parts or (not same and "data" not in parts):
        return  # an empty shard
    query = parts["query"]
    data = query if same else parts["data"]
    ids, emb = (_embeddings(query) if same else _embeddings(query, data))
    num_q = len(query[0])
    offset = 0 if same else num_q
    num_d = len(data[0])
    fetch = min(num_d, k + 1 + _KNN_EXTRA)
    faiss = _similarity._import_faiss()  # pylint: disable=protected-access
    if num_threads is not None:
        faiss.omp_set_num_threads(num_threads)
    database = emb.unit[offset:offset + num_d]
    if method == "exact":
        index = faiss.IndexFlatIP(emb.dim)
        index.add(database)
    else:
        index = faiss.IndexHNSWFlat(emb.dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 40
        index.hnsw.efSearch = ef_search or max(64, 2 * fetch)
        index.add(database)
    batch = 1 << 14
    for start in range(0, num_q, batch):
        rows = np.arange(start, min(start + batch, num_q))
        _, candidates = index.search(emb.unit[rows], fetch)
        rows2d = np.broadcast_to(rows[:, None], candidates.shape)
        valid = (candidates >= 0) & (candidates + offset != rows2d)
        src, dst = rows2d[valid], candidates[valid] + offset
        w = emb.cosine(src, dst)
        per_row = {}
        for s, d, x in zip(src.tolist(), dst.tolist(), w.tolist()):
            per_row.setdefault(s, []).append((x, ids[d]))
        for s, found in per_row.items():
            yield ids[s], found


def _top_k(element, k, threshold):
    """A node's `k` best candidates over all shards, as undirected edges."""
    node_id, lists = element
    candidates = [c for found in lists for c in found]
    # Weight descending, ties towards the larger id (Python str order).
    candidates.sort(reverse=True)
    for weight, other in candidates[:k]:
        if weight >= threshold:
            yield (min(node_id, other), max(node_id, other)), weight


def _lsh_buckets(element, splits, rounds, seed):
    """`((round, bucket), (ids, vectors))` for the rows of one shard."""
    from neural_structured_learning.tools import _similarity  # pylint: disable=import-outside-toplevel
    _, (ids, vectors) = element
    emb = _similarity.Embeddings(vectors)
    rng = np.random.RandomState(seed)
    weights = 1 << np.arange(splits, dtype=np.int64)
    for lsh_round in range(rounds):
        planes = rng.rand(splits, emb.dim) * 2 - 1
        above = emb.unit64(np.arange(len(emb))) @ planes.T > 0.0
        buckets = above @ weights
        for bucket in np.unique(buckets).tolist():
            rows = np.flatnonzero(buckets == bucket)
            yield (lsh_round, bucket), ([ids[r] for r in rows], vectors[rows])


def _bucket_pairs(element, threshold):
    """Exact pairs inside one LSH bucket."""
    from neural_structured_learning.tools import _similarity  # pylint: disable=import-outside-toplevel
    _, parts = element
    parts = list(parts)
    if sum(len(part_ids) for part_ids, _ in parts) < 2:
        return
    ids, emb = _embeddings(*parts)
    i, j, w = _similarity.threshold_pairs(emb, threshold, None, False)
    for x, y, weight in zip(i.tolist(), j.tolist(), w.tolist()):
        a, b = ids[x], ids[y]
        yield (min(a, b), max(a, b)), weight


def _lines(element):
    """Both TSV lines of an edge, keyed by (source, target) for sorting."""
    (a, b), weight = element
    yield (a, b), f"{a}\t{b}\t{weight:f}\n"
    yield (b, a), f"{b}\t{a}\t{weight:f}\n"
