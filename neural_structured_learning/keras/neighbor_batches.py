"""Per-batch neighbour lookup: NSL-format batches from node features and a graph.

NSL 1.4 joined every labeled example with copies of its neighbours' features
on disk (`pack_nbrs`), multiplying the data by `1 + max_neighbors`. Here the
graph is kept as CSR arrays and the neighbours of each batch are looked up
(sampled) when the batch is made, from the one copy of the node features:

    batch = ({name: x[seeds],
              f"{prefix}{i}_{name}": x[nbr[:, i]],
              f"{prefix}{i}{weight_suffix}": w[:, i:i + 1]},   # i < N
             labels[seeds])

Memory is O(nodes + edges) plus one batch; the output is exactly the packed
format `nsl.keras.GraphRegularization` reads, so the two paths are
interchangeable.

* `NeighborBatchDataset`: a `keras.utils.PyDataset` (every backend).
* `make_neighbor_batch_tf_dataset`: the same batches as a `tf.data.Dataset`.
"""

import itertools
import math

import keras
import numpy as np

from neural_structured_learning._core import naming
from neural_structured_learning._core import validation
from neural_structured_learning.configs import configs
from neural_structured_learning.tools import graph_utils

SAMPLINGS = ("top", "weighted", "uniform")


# ---------------------------------------------------------------------------
# Graphs as CSR arrays (via nsl.tools.load_graph_csr).


def _graph_to_csr(graph, num_nodes, node_ids=None, undirected=False,
                  missing_ids="raise"):
    """Loads `graph` as a `nsl.tools.Graph` over the `num_nodes` rows.

    Ids are looked up in `node_ids` (compared as strings), or are row
    numbers when `node_ids` is None. Self-loops and zero-weight edges are
    dropped (they regularize nothing); duplicate edges keep the largest
    weight; each row's edges are sorted by weight descending, ties towards
    the larger target id (NSL 1.4's `pack_nbrs` order).

    Raises:
        ValueError: graph ids that are not feature rows (with
            `missing_ids='raise'`), negative or non-finite weights.
    """
    if isinstance(graph, graph_utils.Graph):
        # A `Graph` (e.g. from `load_graph_csr` or `khop_neighbors`): its
        # edges by id, looked up like any other edge list.
        sources = np.repeat(graph.ids, np.diff(graph.indptr))
        graph = (sources.astype(str), graph.ids[graph.indices].astype(str),
                 graph.weights)
    if node_ids is None:
        ids = np.arange(num_nodes).astype(str)
    else:
        ids = np.asarray(node_ids).astype(str)
        if ids.shape != (num_nodes,):
            raise ValueError(
                f"`node_ids` must hold one id per feature row, shape "
                f"({num_nodes},). Received shape {ids.shape}.")
        if isinstance(graph, tuple) and len(graph) in (2, 3):
            # Integer arrays would be taken as rows: look them up as ids.
            graph = (np.asarray(graph[0]).astype(str),
                     np.asarray(graph[1]).astype(str), *graph[2:])
    try:
        csr = graph_utils.load_graph_csr(
            graph, ids=ids, add_undirected_edges=undirected,
            drop_self_loops=True, drop_zero_weights=True,
            missing_ids=missing_ids)
    except graph_utils.UnknownNodeError as error:
        what = ("`node_ids` (the ids of the feature rows)"
                if node_ids is not None else
                f"the feature rows [0, {num_nodes}) (no `node_ids`)")
        raise ValueError(
            f"The graph has node ids that are not {what}: {error}") from None
    if len(csr.weights) and csr.weights.min() < 0:
        bad = int(np.flatnonzero(csr.weights < 0)[0])
        source = int(np.searchsorted(csr.indptr, bad, side="right") - 1)
        raise ValueError(
            f"Edge weights must be >= 0. Received "
            f"{int((csr.weights < 0).sum())} negative weight(s), e.g. "
            f"{str(csr.ids[source])!r} -> {str(csr.ids[csr.indices[bad]])!r} with "
            f"weight {csr.weights[bad]}.")
    return csr


# ---------------------------------------------------------------------------
# Neighbour sampling.


def _sample_neighbors(graph, rows, k, sampling, rng):
    """Returns `(neighbors [B, k], weights [B, k], valid [B, k])`.

    * 'top': the `k` highest-weight neighbours (the CSR row order).
    * 'weighted': `k` neighbours without replacement, with probability
      proportional to the edge weight (Efraimidis-Spirakis keys
      `Exp(1) / w`, smallest first).
    * 'uniform': `k` neighbours uniformly without replacement.

    Rows with fewer than `k` neighbours are padded (`valid` False, weight 0).
    """
    batch = len(rows)
    starts = graph.indptr[rows]
    degrees = graph.indptr[rows + 1] - starts
    slots = np.arange(k)
    valid = slots[None, :] < np.minimum(degrees, k)[:, None]
    if sampling == "top":
        positions = np.where(valid, starts[:, None] + slots[None, :], 0)
    else:
        total = int(degrees.sum())
        offsets = np.repeat(np.cumsum(degrees) - degrees, degrees)
        segment = np.repeat(np.arange(batch), degrees)
        edges = np.repeat(starts, degrees) + np.arange(total) - offsets
        if sampling == "weighted":
            keys = rng.exponential(size=total) / graph.weights[edges]
        else:
            keys = rng.random(total)
        order = np.lexsort((keys, segment))
        rank = np.arange(total) - offsets  # Segments keep their places.
        chosen = rank < k
        positions = np.zeros((batch, k), np.int64)
        positions[segment[chosen], rank[chosen]] = edges[order][chosen]
    if graph.num_edges == 0:
        return (np.zeros((batch, k), np.int64),
                np.zeros((batch, k), np.float32), valid)
    neighbors = np.where(valid, graph.indices[positions], 0)
    weights = np.where(valid, graph.weights[positions], 0).astype(np.float32)
    return neighbors, weights, valid


def _take(array, rows):
    if hasattr(array, "tocsr"):  # scipy.sparse rows -> dense.
        return np.asarray(array[rows].toarray())
    return np.take(array, rows, axis=0)


def _check_config(neighbor_config):
    if isinstance(neighbor_config, configs.GraphRegConfig):
        return neighbor_config.neighbor_config
    if neighbor_config is None:
        return configs.GraphNeighborConfig()
    if not isinstance(neighbor_config, configs.GraphNeighborConfig):
        raise TypeError(
            "`neighbor_config` must be an nsl.configs.GraphNeighborConfig "
            "(or a GraphRegConfig). Received: "
            f"{type(neighbor_config).__name__}")
    return neighbor_config


class _NeighborBatches:
    """Framework-free core: makes batch `index` of epoch `epoch`."""

    def __init__(self, features, labels, graph, neighbor_config, *,
                 node_ids=None, seeds=None, label_mask=None, batch_size=128,
                 sampling="top", undirected=False, shuffle=True, seed=None,
                 missing_ids="raise", feature_name="feature",
                 drop_remainder=False, unlabeled_label=None):
        self.neighbor_config = _check_config(neighbor_config)
        self.unlabeled_label = unlabeled_label
        if not isinstance(features, dict):
            features = {feature_name: features}
        self.features = {}
        for name, value in features.items():
            if hasattr(value, "tocsr"):
                value = value.tocsr()
            elif not isinstance(value, np.ndarray):
                value = np.asarray(value)
            self.features[name] = value
        lengths = {name: v.shape[0] for name, v in self.features.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(
                "Every feature must have one row per node. Received row "
                f"counts {lengths}.")
        self.num_nodes = next(iter(lengths.values()))
        self.labels = None if labels is None else np.asarray(labels)
        if self.labels is not None and len(self.labels) != self.num_nodes:
            raise ValueError(
                f"`labels` must have one row per node ({self.num_nodes}). "
                f"Received {len(self.labels)}.")
        self.label_mask = self._label_mask(label_mask)
        self.seeds = self._seeds(seeds)
        self.batch_size = validation.check_int("batch_size", batch_size, 1)
        if sampling not in SAMPLINGS:
            raise ValueError(
                f"`sampling` must be one of {list(SAMPLINGS)}. Received: "
                f"sampling={sampling!r}")
        self.sampling = sampling
        self.shuffle = bool(shuffle)
        self.drop_remainder = bool(drop_remainder)
        self.seed = (int(np.random.SeedSequence().entropy) if seed is None
                     else int(seed))
        self.with_sample_weight = (self.labels is not None and not np.all(
            self.label_mask[self.seeds]))
        if self.neighbor_config.max_neighbors > 0:
            if graph is None:
                raise ValueError(
                    "`graph` is required when max_neighbors > 0.")
            self.graph = _graph_to_csr(graph, self.num_nodes, node_ids,
                                       undirected, missing_ids)
        else:
            self.graph = None

    def _label_mask(self, label_mask):
        if label_mask is not None:
            label_mask = np.asarray(label_mask, dtype=bool)
            if label_mask.shape != (self.num_nodes,):
                raise ValueError(
                    f"`label_mask` must have shape ({self.num_nodes},). "
                    f"Received shape {label_mask.shape}.")
            return label_mask
        if self.labels is not None and self.labels.dtype.kind in "iu":
            flat = self.labels.reshape(self.num_nodes, -1)
            return np.all(flat != naming.UNLABELED, axis=1)
        return np.ones(self.num_nodes, bool)

    def _seeds(self, seeds):
        if seeds is None:
            rows = np.flatnonzero(self.label_mask)
        elif isinstance(seeds, str):
            if seeds != "all":
                raise ValueError(
                    "`seeds` must be None (labeled nodes), 'all', or node "
                    f"rows. Received: seeds={seeds!r}")
            rows = np.arange(self.num_nodes)
        else:
            rows = np.asarray(seeds)
            if rows.dtype == bool:
                if rows.shape != (self.num_nodes,):
                    raise ValueError(
                        f"A boolean `seeds` mask must have shape "
                        f"({self.num_nodes},). Received {rows.shape}.")
                rows = np.flatnonzero(rows)
            rows = rows.astype(np.int64).ravel()
            bad = (rows < 0) | (rows >= self.num_nodes)
            if bad.any():
                raise ValueError(
                    f"`seeds` must be rows in [0, {self.num_nodes}). "
                    f"Received e.g. {rows[bad][:5].tolist()}.")
        if len(rows) == 0:
            raise ValueError("There are no seed nodes to make batches of.")
        return rows

    def __len__(self):
        if self.drop_remainder:
            return len(self.seeds) // self.batch_size
        return math.ceil(len(self.seeds) / self.batch_size)

    def order(self, epoch):
        if not self.shuffle:
            return self.seeds
        return np.random.default_rng([self.seed, epoch]).permutation(
            self.seeds)

    def batch(self, epoch, index, order=None):
        if not 0 <= index < len(self):
            raise IndexError(f"Batch index {index} out of range "
                             f"[0, {len(self)}).")
        order = self.order(epoch) if order is None else order
        rows = order[index * self.batch_size:(index + 1) * self.batch_size]
        x = {name: _take(value, rows) for name, value in
             self.features.items()}
        k = self.neighbor_config.max_neighbors
        if k > 0:
            rng = np.random.default_rng([self.seed, epoch, index, 1])
            neighbors, weights, valid = _sample_neighbors(
                self.graph, rows, k, self.sampling, rng)
            for name, value in self.features.items():
                copies = _take(value, neighbors.ravel())
                copies = copies.reshape((len(rows), k) + copies.shape[1:])
                copies[~valid] = 0
                for i in range(k):
                    key = naming.neighbor_feature_name(self.neighbor_config,
                                                       i, name)
                    x[key] = copies[:, i]
            for i in range(k):
                key = naming.neighbor_weight_name(self.neighbor_config, i)
                x[key] = weights[:, i:i + 1]
        if self.labels is None:
            return x
        y = np.take(self.labels, rows, axis=0)
        if not self.with_sample_weight:
            return x, y
        labeled = self.label_mask[rows].reshape((-1,) + (1,) * (y.ndim - 1))
        if self.unlabeled_label is not None:
            return x, np.where(labeled, y, np.full_like(
                y, self.unlabeled_label))
        y = np.where(labeled, y, np.zeros_like(y))
        return x, y, labeled.reshape(-1).astype(np.float32)


_COMMON_ARGS = """
    Args:
        features: node features, one row per node: an array `[nodes, ...]`
            (named `feature_name`), a scipy.sparse matrix (rows are
            densified per batch), or a dict of those keyed by feature name.
        labels: labels, one row per node (`[nodes]` or `[nodes, ...]`), or
            None to yield features only (e.g. for `predict`). With integer
            labels, -1 marks an unlabeled node unless `label_mask` is given.
        graph: the edges, directed `source -> target` (the target is a
            neighbour of the source), in one of these forms:
            * a `(sources, targets)` or `(sources, targets, weights)` tuple
              of 1-D arrays (weights default to 1);
            * the path of a TSV file `source<TAB>target[<TAB>weight]`, as
              written by the graph tools (`nsl.tools.write_tsv_graph`);
            * a `{source: {target: weight}}` dict (`read_tsv_graph`);
            * a scipy.sparse `(nodes, nodes)` matrix, `A[i, j]` the weight
              of `i -> j` (ids are rows);
            * a `nsl.tools.Graph` (from `load_graph_csr`, `khop_neighbors`
              or `ppr_neighbors`), by its ids.
            Ids are looked up in `node_ids`, or are row numbers when
            `node_ids` is None. Self-loops and zero weights are dropped;
            duplicate edges keep the largest weight. Not needed when
            `max_neighbors == 0`.
        neighbor_config: the `GraphNeighborConfig` of the model (or its
            `GraphRegConfig`): prefix, weight suffix, `max_neighbors`.
        node_ids: optional id of each feature row, `[nodes]` (ints or
            strings), used to resolve the graph's ids.
        seeds: the nodes batches are made of: None (default) for the
            labeled nodes, 'all' for every node (unlabeled ones get label 0
            and sample weight 0, so they only contribute to the graph loss),
            or an array of rows (or a boolean mask).
        label_mask: optional boolean `[nodes]`, True for labeled nodes.
        unlabeled_label: None (default): unlabeled seeds get label 0 and
            sample weight 0. A value (e.g. -1): unlabeled seeds carry it as
            their label and no sample weights are yielded, for models that
            train their labeled loss on labeled rows only and their graph
            term on every row (`GraphRegularization(...,
            unlabeled_label=-1)`, `RegularizedModel(...,
            unlabeled_label=-1)`).
        batch_size: seeds per batch.
        sampling: how neighbours are chosen when a node has more than
            `max_neighbors`: 'top' (highest weights, deterministic; NSL
            1.4's `pack_nbrs`), 'weighted' (without replacement,
            probability proportional to the weight) or 'uniform'. Fewer
            neighbours are padded with zero features and weight 0.
        undirected: add the reverse of every edge.
        shuffle: shuffle the seeds every epoch.
        seed: seed of the shuffling and sampling. Batch `b` of epoch `e` is
            a pure function of `(seed, e, b)`. None draws a seed.
        missing_ids: 'raise' (default) or 'drop' for edges whose ids are not
            in `node_ids`.
        feature_name: name of the feature when `features` is an array.
        drop_remainder: drop the last incomplete batch.

    Each batch is `(x, y)`, or `(x, y, sample_weight)` when some seeds are
    unlabeled (and `unlabeled_label` is None), or `x` when `labels` is None; `x` holds `name`,
    `{prefix}{i}_{name}` and `{prefix}{i}{weight_suffix}` (`[B, 1]`
    float32) for `i < max_neighbors`.

    Raises:
        ValueError: graph ids not found in `node_ids` (names them), negative
            or non-finite edge weights, rows of different lengths, bad
            `seeds`, `sampling`, `batch_size`.
"""


class NeighborBatchDataset(keras.utils.PyDataset):
    __doc__ = """A `keras.utils.PyDataset` of NSL-format batches with neighbours.

    Batches of seed nodes with up to `max_neighbors` neighbours each, looked
    up in `graph` when the batch is made (memory O(nodes + edges)):
    `GraphRegularization.fit(NeighborBatchDataset(...))` on any backend.
    """ + _COMMON_ARGS + """
        **kwargs: `keras.utils.PyDataset` arguments (`workers`,
            `use_multiprocessing`, `max_queue_size`).

    Example:
    >>> x = np.random.rand(4, 3).astype('float32')  # 4 nodes, 3 features.
    >>> y = np.array([0, 1, 0, 1])
    >>> src, dst = np.array([0, 0, 1, 2]), np.array([1, 2, 0, 3])  # Edges.
    >>> config = nsl.configs.make_graph_reg_config(max_neighbors=2)
    >>> data = nsl.keras.NeighborBatchDataset(
    ...     x, y, (src, dst), config.neighbor_config, batch_size=2,
    ...     feature_name='words', seed=0)
    >>> len(data)
    2
    >>> features, labels = data[0]
    >>> print(*sorted(features))
    NL_nbr_0_weight NL_nbr_0_words NL_nbr_1_weight NL_nbr_1_words words
    >>> features['NL_nbr_1_words'].shape, labels.shape
    ((2, 3), (2,))
    """

    def __init__(self, features, labels, graph, neighbor_config, *,
                 node_ids=None, seeds=None, label_mask=None, batch_size=128,
                 sampling="top", undirected=False, shuffle=True, seed=None,
                 missing_ids="raise", feature_name="feature",
                 drop_remainder=False, unlabeled_label=None, **kwargs):
        super().__init__(**kwargs)
        self._batches = _NeighborBatches(
            features, labels, graph, neighbor_config, node_ids=node_ids,
            seeds=seeds, label_mask=label_mask, batch_size=batch_size,
            sampling=sampling, undirected=undirected, shuffle=shuffle,
            seed=seed, missing_ids=missing_ids, feature_name=feature_name,
            drop_remainder=drop_remainder, unlabeled_label=unlabeled_label)
        self.epoch = 0
        self._order = self._batches.order(0)

    @property
    def num_batches(self):
        return len(self._batches)

    def __len__(self):
        return len(self._batches)

    def __getitem__(self, index):
        return self._batches.batch(self.epoch, index, self._order)

    def on_epoch_end(self):
        self.epoch += 1
        self._order = self._batches.order(self.epoch)


def make_neighbor_batch_tf_dataset(features, labels, graph, neighbor_config,
                                   **kwargs):
    batches = _NeighborBatches(features, labels, graph, neighbor_config,
                               **kwargs)
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    def spec(value):
        return tf.TensorSpec((None,) + tuple(value.shape[1:]),
                             tf.as_dtype(value.dtype))

    signature = tuple(
        {k: spec(v) for k, v in part.items()} if isinstance(part, dict)
        else spec(part)
        for part in _as_tuple(batches.batch(0, 0)))
    if len(signature) == 1:
        signature = signature[0]
    epochs = itertools.count()

    def generate():
        epoch = next(epochs)
        order = batches.order(epoch)
        for index in range(len(batches)):
            yield batches.batch(epoch, index, order)

    dataset = tf.data.Dataset.from_generator(generate,
                                             output_signature=signature)
    return dataset.prefetch(tf.data.AUTOTUNE)


make_neighbor_batch_tf_dataset.__doc__ = """Returns a `tf.data.Dataset` of NSL-format batches with neighbours.

    The same batches as `NeighborBatchDataset` (for TensorFlow input
    pipelines): the `e`-th iteration over the dataset yields epoch `e`'s
    batches. Needs TensorFlow; the batches are made in Python (NumPy) and
    prefetched.
    """ + _COMMON_ARGS + """
    Returns:
        A `tf.data.Dataset`, batched, with an unknown batch dimension.
    """


def _as_tuple(batch):
    return batch if isinstance(batch, tuple) else (batch,)
