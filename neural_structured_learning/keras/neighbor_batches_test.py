"""Tests for neighbor_batches.py (per-batch neighbour lookup)."""

import keras
import numpy as np
import pytest

from neural_structured_learning import configs
from neural_structured_learning._testing import assert_allclose
from neural_structured_learning.keras import graph_regularization
from neural_structured_learning.keras import neighbor_batches

# 6 nodes; feature of row r is [r, 10 r]; labels with -1 = unlabeled.
X = np.stack([np.arange(6), 10 * np.arange(6)], axis=1).astype("float32")
Y = np.array([0, 1, -1, 1, 0, -1])
SOURCES = np.array([0, 0, 0, 1, 3, 4])
TARGETS = np.array([1, 2, 3, 2, 4, 5])
WEIGHTS = np.array([1., .5, 2., 1., 1., .3])
GRAPH = (SOURCES, TARGETS, WEIGHTS)


def _config(max_neighbors):
    return configs.GraphNeighborConfig(max_neighbors=max_neighbors)


def _dataset(max_neighbors=2, **kwargs):
    kwargs.setdefault("shuffle", False)
    kwargs.setdefault("seed", 0)
    kwargs.setdefault("batch_size", 6)
    return neighbor_batches.NeighborBatchDataset(
        X, Y, GRAPH, _config(max_neighbors), **kwargs)


def test_top_neighbors_of_the_labeled_nodes():
    x, y = _dataset(undirected=True)[0]  # Seeds: the labeled rows 0 1 3 4.
    assert sorted(x) == ["NL_nbr_0_feature", "NL_nbr_0_weight",
                         "NL_nbr_1_feature", "NL_nbr_1_weight", "feature"]
    assert_allclose(y, [0, 1, 1, 0])
    assert_allclose(x["feature"][:, 0], [0, 1, 3, 4])
    # Undirected out-edges, by weight then larger id: 0: 3 (2), 1 (1),
    # 2 (.5); 1: 2 (1), 0 (1); 3: 0 (2), 4 (1); 4: 3 (1), 5 (.3).
    assert_allclose(x["NL_nbr_0_feature"][:, 0], [3, 2, 0, 3])
    assert_allclose(x["NL_nbr_1_feature"][:, 0], [1, 0, 4, 5])
    assert_allclose(x["NL_nbr_0_feature"][:, 1], [30, 20, 0, 30])
    assert_allclose(x["NL_nbr_0_weight"], [[2], [1], [2], [1]])
    assert_allclose(x["NL_nbr_1_weight"], [[1], [1], [1], [.3]])
    assert x["NL_nbr_0_weight"].dtype == np.float32


def test_padding_has_zero_features_and_weight():
    # Directed: row 0 -> 3 (2), 1 (1), 2 (.5); rows 1, 3, 4 have 1 edge.
    x, _ = _dataset(max_neighbors=3)[0]
    assert_allclose(x["NL_nbr_1_feature"], [[1, 10], [0, 0], [0, 0],
                                            [0, 0]])
    assert_allclose(x["NL_nbr_1_weight"], [[1], [0], [0], [0]])
    assert_allclose(x["NL_nbr_2_weight"], [[.5], [0], [0], [0]])


def test_all_seeds_weight_out_the_unlabeled_nodes():
    x, y, sample_weight = _dataset(seeds="all")[0]
    assert_allclose(x["feature"][:, 0], np.arange(6))
    assert_allclose(y, [0, 1, 0, 1, 0, 0])  # -1 replaced by 0 ...
    assert_allclose(sample_weight, [1, 1, 0, 1, 1, 0])  # ... weighted 0.


def test_explicit_seeds_and_label_mask():
    data = neighbor_batches.NeighborBatchDataset(
        X, Y.astype("float32"), GRAPH, _config(1), seeds=[4, 2],
        label_mask=Y >= 0, shuffle=False, batch_size=1)
    assert len(data) == 2
    x, y, sample_weight = data[1]
    assert_allclose(x["feature"][:, 0], [2])
    assert_allclose(sample_weight, [0])


def test_no_labels_yields_features_only():
    data = neighbor_batches.NeighborBatchDataset(
        X, None, GRAPH, _config(1), shuffle=False, batch_size=4)
    assert len(data) == 2 and isinstance(data[0], dict)


@pytest.mark.parametrize("form", ["tuple", "tsv", "dict", "sparse"])
def test_graph_forms_agree(form, tmp_path):
    ids = np.array([f"n{r}" for r in range(6)])
    if form == "tuple":
        graph = (ids[SOURCES], ids[TARGETS], WEIGHTS)
    elif form == "tsv":
        graph = str(tmp_path / "graph.tsv")
        with open(graph, "w") as f:
            for s, t, w in zip(SOURCES, TARGETS, WEIGHTS):
                f.write(f"n{s}\tn{t}\t{w}\n")
    elif form == "dict":
        graph = {}
        for s, t, w in zip(SOURCES, TARGETS, WEIGHTS):
            graph.setdefault(f"n{s}", {})[f"n{t}"] = w
    else:
        scipy_sparse = pytest.importorskip("scipy.sparse")
        graph = scipy_sparse.csr_matrix((WEIGHTS, (SOURCES, TARGETS)),
                                        shape=(6, 6))
        ids = None
    data = neighbor_batches.NeighborBatchDataset(
        X, Y, graph, _config(2), node_ids=ids, shuffle=False, batch_size=6)
    expected = _dataset()[0]
    for key, value in expected[0].items():
        assert_allclose(data[0][0][key], value)


def test_integer_node_ids_are_ids_not_rows():
    ids = np.array([100, 101, 102, 103, 104, 105])
    data = neighbor_batches.NeighborBatchDataset(
        X, Y, (SOURCES + 100, TARGETS + 100, WEIGHTS), _config(2),
        node_ids=ids, shuffle=False, batch_size=6)
    assert_allclose(data[0][0]["NL_nbr_0_feature"],
                    _dataset()[0][0]["NL_nbr_0_feature"])


def test_self_loops_duplicates_and_zero_weights():
    graph = (np.array([0, 0, 0, 0, 1]), np.array([0, 1, 1, 2, 0]),
             np.array([5., .2, .7, 0., 1.]))
    x, _ = neighbor_batches.NeighborBatchDataset(
        X, Y, graph, _config(2), shuffle=False, batch_size=2)[0]
    # Row 0: the self-loop and the zero weight are dropped; 0 -> 1 keeps .7.
    assert_allclose(x["NL_nbr_0_feature"][:, 0], [1, 0])
    assert_allclose(x["NL_nbr_0_weight"], [[.7], [1]])
    assert_allclose(x["NL_nbr_1_weight"], [[0], [0]])


def test_weighted_sampling_follows_the_weights():
    graph = neighbor_batches._graph_to_csr(
        (np.zeros(3, int), np.array([1, 2, 3]), np.array([1., 2., 5.])), 6)
    rng = np.random.default_rng(0)
    rows = np.zeros(20000, np.int64)  # Row 0, drawn 20000 times.
    neighbors, weights, valid = neighbor_batches._sample_neighbors(
        graph, rows, 1, "weighted", rng)
    assert valid.all()
    frequency = np.bincount(neighbors[:, 0], minlength=4)[1:] / len(rows)
    assert_allclose(frequency, [1 / 8, 2 / 8, 5 / 8], atol=0.015)
    assert_allclose(weights[:, 0], np.array([0, 1., 2., 5.])[neighbors[:, 0]])
    # Two draws without replacement are two different neighbours.
    neighbors, _, _ = neighbor_batches._sample_neighbors(
        graph, rows[:100], 2, "uniform", rng)
    assert (neighbors[:, 0] != neighbors[:, 1]).all()


@pytest.mark.parametrize("sampling", ["weighted", "uniform"])
def test_sampling_is_deterministic_with_a_seed(sampling):
    first = _dataset(1, sampling=sampling, shuffle=True, seed=7, batch_size=2)
    second = _dataset(1, sampling=sampling, shuffle=True, seed=7,
                      batch_size=2)
    for index in range(len(first)):
        for a, b in zip(first[index], second[index]):
            for key in a:
                assert_allclose(a[key], b[key])
    orders = [first._order.tolist()]
    for _ in range(3):
        first.on_epoch_end()
        orders.append(first._order.tolist())
    assert sorted(orders[0]) == [0, 1, 3, 4]
    assert len({tuple(o) for o in orders}) > 1  # Reshuffled every epoch.


def test_tf_dataset_yields_the_same_batches():
    pytest.importorskip("tensorflow")
    kwargs = dict(seeds="all", batch_size=4, sampling="uniform", seed=3)
    py_data = neighbor_batches.NeighborBatchDataset(X, Y, GRAPH, _config(2),
                                                    **kwargs)
    tf_data = neighbor_batches.make_neighbor_batch_tf_dataset(
        X, Y, GRAPH, _config(2), **kwargs)
    for epoch in range(2):
        batches = list(tf_data)
        assert len(batches) == len(py_data) == 2
        for index, batch in enumerate(batches):
            expected = py_data[index]
            for key in expected[0]:
                assert_allclose(batch[0][key].numpy(), expected[0][key])
            assert_allclose(batch[2].numpy(), expected[2])
        py_data.on_epoch_end()


def test_memory_is_nodes_plus_edges():
    data = _dataset(undirected=True)
    batches = data._batches
    assert np.shares_memory(batches.features["feature"], X)  # No copy.
    assert batches.graph.num_edges == 2 * len(SOURCES)
    assert len(batches.graph.indptr) == len(X) + 1


# -- The packed and the per-batch paths give the same loss -------------------


def _linear():
    x = keras.Input((2,), name="feature")
    return keras.Model(x, keras.layers.Dense(
        1, use_bias=False,
        kernel_initializer=keras.initializers.Constant([[.5], [-.1]]))(x))


def test_packed_and_per_batch_losses_agree():
    config = configs.make_graph_reg_config(max_neighbors=2, multiplier=1,
                                           sum_over_axis=-1)
    model = graph_regularization.GraphRegularization(_linear(), config)
    model.compile(loss="mse")
    data = neighbor_batches.NeighborBatchDataset(
        X, Y, GRAPH, config.neighbor_config, undirected=True, shuffle=False,
        batch_size=4)
    per_batch = model.evaluate(data, verbose=0, return_dict=True)
    # The same neighbours, packed by hand (as NSL 1.4's pack_nbrs would).
    rows = np.array([0, 1, 3, 4])
    neighbors = np.array([[3, 1], [2, 0], [0, 4], [3, 5]])
    weights = np.array([[2, 1], [1, 1], [2, 1], [1, .3]], "float32")
    packed = {"feature": X[rows]}
    for i in range(2):
        packed[f"NL_nbr_{i}_feature"] = X[neighbors[:, i]]
        packed[f"NL_nbr_{i}_weight"] = weights[:, i:i + 1]
    logs = model.evaluate(packed, Y[rows], verbose=0, return_dict=True)
    assert_allclose(per_batch["loss"], logs["loss"], rtol=1e-6)
    assert_allclose(per_batch["scaled_graph_loss"],
                    logs["scaled_graph_loss"], rtol=1e-6)
    # Known value: f(x) = 0.5 x0 - 0.1 x1 = -0.5 r for row r, so
    # sum_ij w_ij (f_i - f_j)^2 / nnz(w) = 0.25 sum_ij w_ij (r_i - r_j)^2 / 8.
    expected = 0.25 * (weights * (rows[:, None] - neighbors) ** 2).sum() / 8
    assert_allclose(logs["scaled_graph_loss"], expected, rtol=1e-6)


# -- Bad input ------------------------------------------------------------------


def test_graph_ids_not_in_the_features():
    ids = np.array([f"n{r}" for r in range(6)])
    graph = (np.array(["n0", "n9"]), np.array(["n1", "x"]))
    with pytest.raises(ValueError, match=r"The graph has node ids that are "
                       r"not `node_ids` \(the ids of the feature rows\): 2 "
                       r"graph node id\(s\) are not in `ids`, e.g. "
                       r"\['n9', 'x'\]"):
        neighbor_batches.NeighborBatchDataset(X, Y, graph, _config(1),
                                              node_ids=ids)
    with pytest.raises(ValueError, match=r"not the feature rows \[0, 6\)"):
        neighbor_batches.NeighborBatchDataset(
            X, Y, (np.array([0]), np.array([6])), _config(1))
    data = neighbor_batches.NeighborBatchDataset(
        X, Y, graph, _config(1), node_ids=ids, missing_ids="drop",
        shuffle=False)
    assert_allclose(data[0][0]["NL_nbr_0_feature"][:, 0], [1, 0, 0, 0])


def test_negative_weights():
    with pytest.raises(ValueError, match=r"Edge weights must be >= 0. "
                       r"Received 1 negative weight\(s\), e.g. '1' -> '2' "
                       r"with weight -1.0"):
        neighbor_batches.NeighborBatchDataset(
            X, Y, (np.array([0, 1]), np.array([1, 2]), np.array([1., -1.])),
            _config(1))


@pytest.mark.parametrize("weight", [np.nan, np.inf])
def test_non_finite_weights(weight):
    with pytest.raises(ValueError, match=r"Edge weights must be finite"):
        neighbor_batches.NeighborBatchDataset(
            X, Y, (np.array([0, 1]), np.array([1, 2]), np.array([1., weight])),
            _config(1))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`sampling` must be one of "
                       r"\['top', 'weighted', 'uniform'\]. Received: "
                       r"sampling='random'"):
        _dataset(sampling="random")
    with pytest.raises(ValueError, match=r"one row per node. Received row "
                       r"counts \{'a': 6, 'b': 5\}"):
        neighbor_batches.NeighborBatchDataset(
            {"a": X, "b": X[:5]}, Y, GRAPH, _config(1))
    with pytest.raises(ValueError, match=r"`seeds` must be rows in \[0, 6\)"):
        _dataset(seeds=[0, 6])
    with pytest.raises(ValueError, match="`graph` is required"):
        neighbor_batches.NeighborBatchDataset(X, Y, None, _config(1))
    with pytest.raises(TypeError, match="`neighbor_config` must be an "
                       "nsl.configs.GraphNeighborConfig"):
        neighbor_batches.NeighborBatchDataset(X, Y, GRAPH, 2)


# -- k-hop and PPR neighbourhoods (nsl.tools) as the graph -------------------


@pytest.mark.parametrize("method", ["khop", "ppr"])
def test_neighborhood_graphs_feed_the_dataset(method, tmp_path):
    scipy_sparse = pytest.importorskip("scipy.sparse")
    # pylint: disable-next=import-outside-toplevel
    from neural_structured_learning import tools
    adjacency = scipy_sparse.csr_array((WEIGHTS, (SOURCES, TARGETS)),
                                       shape=(6, 6))
    adjacency = adjacency + adjacency.T
    if method == "khop":
        nbhd = tools.khop_neighbors(adjacency, k=2, top_k=2)
    else:
        nbhd = tools.ppr_neighbors(adjacency, alpha=0.2, top_k=2)
    tsv = str(tmp_path / "nbhd.tsv")  # Ids "0".."5", the feature rows.
    tools.write_neighborhood_graph(adjacency, tsv, method=method, k=2,
                                   alpha=0.2, top_k=2)
    for graph, node_ids in ((nbhd.to_scipy(), None), (tsv, np.arange(6)),
                            (nbhd, None), (tools.load_graph_csr(tsv), None),
                            (tools.load_graph_csr(tsv), np.arange(6))):
        x, _ = neighbor_batches.NeighborBatchDataset(
            X, Y, graph, _config(2), node_ids=node_ids, shuffle=False,
            batch_size=6)[0]
        for i, row in enumerate([0, 1, 3, 4]):  # The labeled rows.
            targets, weights = nbhd.neighbors(row)
            assert len(targets) == 2
            assert_allclose(
                [x[f"NL_nbr_{j}_feature"][i, 0] for j in range(2)], targets)
            assert_allclose(
                [x[f"NL_nbr_{j}_weight"][i, 0] for j in range(2)], weights)


def test_a_graph_with_other_ids_needs_node_ids():
    # pylint: disable-next=import-outside-toplevel
    from neural_structured_learning import tools
    ids = np.array([f"n{i}" for i in range(6)])
    graph = tools.load_graph_csr((ids[SOURCES], ids[TARGETS], WEIGHTS))
    with pytest.raises(ValueError, match="not the feature rows"):
        neighbor_batches.NeighborBatchDataset(X, Y, graph, _config(2))
    x, _ = neighbor_batches.NeighborBatchDataset(
        X, Y, graph, _config(1), node_ids=ids, shuffle=False,
        batch_size=6)[0]
    assert_allclose(x["NL_nbr_0_feature"][:, 0], [3, 2, 4, 5])  # Top weight.
