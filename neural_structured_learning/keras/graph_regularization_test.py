"""Tests for graph_regularization.py (NSL 1.4's vectors, §9.2 C and G)."""

import warnings

import keras
import numpy as np
import pytest

from neural_structured_learning import configs
from neural_structured_learning._testing import assert_allclose
from neural_structured_learning._testing import to_numpy
from neural_structured_learning.keras import graph_regularization
from neural_structured_learning.lib import utils

GraphRegularization = graph_regularization.GraphRegularization
W0 = [[4.], [-3.]]


def f32(x):
    return np.asarray(x, "float32")


def _dense(name=None):
    return keras.layers.Dense(
        1, use_bias=False, name=name,
        kernel_initializer=keras.initializers.Constant(W0))


class _Subclassed(keras.Model):

    def __init__(self):
        super().__init__()
        self.dense = _dense()

    def call(self, inputs):  # Subclassed models get the feature dict.
        return self.dense(inputs["feature"])


def _linear(kind):
    """The 1.4 test model: y = x w, w = [[4], [-3]], input 'feature'."""
    if kind == "sequential":
        return keras.Sequential([keras.Input((2,), name="feature"),
                                 _dense()])
    if kind == "functional":
        x = keras.Input((2,), name="feature")
        return keras.Model(x, _dense()(x))
    return _Subclassed()


def _config(max_neighbors, multiplier=1.0, **distance):
    return configs.GraphRegConfig(
        neighbor_config=configs.GraphNeighborConfig(
            max_neighbors=max_neighbors),
        multiplier=multiplier,
        distance_config=configs.DistanceConfig(**distance))


def _g_batch(num_neighbors):
    """§9.2 G: x = [[2, 3]], neighbours [[2.5, 3]] and [[2, 2]], weight 1."""
    x = {"feature": f32([[2, 3]]), "NL_nbr_0_feature": f32([[2.5, 3]]),
         "NL_nbr_0_weight": f32([[1]])}
    if num_neighbors == 2:
        x.update(NL_nbr_1_feature=f32([[2, 2]]), NL_nbr_1_weight=f32([[1]]))
    return x, f32([[0]])


def _fit_one_step(model, x, y):
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    history = model.fit(x, y, batch_size=len(y), epochs=1, verbose=0)
    return {k: v[0] for k, v in history.history.items()}


# -- NSL 1.4's one-step updates (§9.2 G) ------------------------------------

# f(x) = -1; f(n0) = 1, f(n1) = 2. Labeled loss (f(x) - 0)^2 = 1, gradient
# 2 f(x) x = [-4, -6]. Graph loss (f(x) - f(n))^2 = 4 (mean with n1: 6.5),
# gradient 2 (f(x) - f(n)) (x - n) = [2, 0] (mean with n1: [1, 3]).
@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed"])
@pytest.mark.parametrize("num_neighbors, expected_w, graph_loss", [
    (1, [[4.02], [-2.94]], 4.0),
    (2, [[4.03], [-2.91]], 6.5),
])
def test_one_sgd_step(kind, num_neighbors, expected_w, graph_loss):
    base = _linear(kind)
    model = GraphRegularization(base, _config(num_neighbors))
    logs = _fit_one_step(model, *_g_batch(num_neighbors))
    assert_allclose(base.trainable_variables[0], expected_w, rtol=1e-6)
    assert_allclose(logs["scaled_graph_loss"], graph_loss, rtol=1e-6)
    assert_allclose(logs["loss"], 1.0 + graph_loss, rtol=1e-6)


@pytest.mark.parametrize("num_neighbors, expected_w", [
    (1, [[4.02], [-2.94]]), (2, [[4.03], [-2.91]])])
def test_separate_neighbor_pass_gives_the_same_step(num_neighbors,
                                                    expected_w):
    base = _linear("functional")
    model = GraphRegularization(base, _config(num_neighbors),
                                neighbor_pass="separate")
    _fit_one_step(model, *_g_batch(num_neighbors))
    assert_allclose(base.trainable_variables[0], expected_w, rtol=1e-6)


def test_zero_weight_padding_is_ignored():
    # A second neighbour slot padded with weight 0 changes nothing.
    x, y = _g_batch(1)
    x.update(NL_nbr_1_feature=f32([[0, 0]]), NL_nbr_1_weight=f32([[0]]))
    base = _linear("sequential")
    logs = _fit_one_step(GraphRegularization(base, _config(2)), x, y)
    assert_allclose(base.trainable_variables[0], [[4.02], [-2.94]],
                    rtol=1e-6)
    assert_allclose(logs["scaled_graph_loss"], 4.0)


def test_multiplier_scales_the_graph_loss():
    base = _linear("sequential")
    logs = _fit_one_step(GraphRegularization(base, _config(1, 0.5)),
                         *_g_batch(1))
    # Gradient [-4, -6] + 0.5 [2, 0] = [-3, -6].
    assert_allclose(base.trainable_variables[0], [[4.03], [-2.94]],
                    rtol=1e-6)
    assert_allclose(logs["scaled_graph_loss"], 2.0)


# -- Every distance, on known outputs (§9.2 C) ------------------------------

S = f32([[1, 1], [2, 2], [0, 2], [5, 5]])
T = f32([[1, 1], [0, 2], [4, 4], [1, 4]])
W = f32([[1], [0], [.5], [.5]])
P = f32([[1, 0, 0], [.1, .2, .7]])
Q = f32([[1, 0, 0], [.1, .9, 0]])
R = configs.Reduction


@pytest.mark.parametrize("sources, targets, weights, distance, expected", [
    (S, T, W, dict(distance_type="l1", sum_over_axis=-1), 5.5 / 3),
    (S, T, W, dict(distance_type="l2", sum_over_axis=-1), 18.5 / 3),
    (S, T, W, dict(distance_type="l2"), 18.5 / 6),
    (S, T, W, dict(distance_type="l2", reduction=R.MEAN, sum_over_axis=-1),
     9.25),
    (S, T, W, dict(distance_type="l1", reduction=R.SUM_OVER_BATCH_SIZE,
                   sum_over_axis=-1), 1.375),
    (f32([[1, 1], [1, 1], [3, 4], [-1, -1]]),
     f32([[1, 1], [5, 5], [4, 3], [1, 1]]), np.ones((4, 1), "float32"),
     dict(distance_type="cosine", sum_over_axis=-1), 0.51),
    (P, Q, np.ones((2, 1), "float32"),
     dict(distance_type="kl_divergence", sum_over_axis=-1), 5.366090),
    (P, Q, np.ones((2, 1), "float32"),
     dict(distance_type="jensen_shannon_divergence", sum_over_axis=-1),
     0.181528),
    (f32([[1, 2, 3], [1, -1, 2]]), f32([[1, 2, 3], [1, 0, -1]]),
     np.ones((2, 1), "float32"),
     dict(distance_type="kl_divergence", sum_over_axis=-1,
          transform_fn="softmax"), 0.569814),
])
def test_graph_loss_of_every_distance(sources, targets, weights, distance,
                                      expected):
    # An identity base model: the regularized outputs are the inputs.
    dim = sources.shape[1]
    base = keras.Sequential([keras.Input((dim,), name="feature"),
                             keras.layers.Identity()])
    model = GraphRegularization(base, _config(1, **distance))
    model.compile(loss="mse")
    x = {"feature": sources, "NL_nbr_0_feature": targets,
         "NL_nbr_0_weight": weights}
    logs = model.evaluate(x, np.zeros_like(sources), batch_size=len(S),
                          verbose=0, return_dict=True)
    assert_allclose(logs["scaled_graph_loss"], expected, rtol=1e-5)


def test_every_distance_with_a_single_neighbor_equal_to_the_sample_is_0():
    base = _linear("sequential")
    x = {"feature": f32([[2, 3], [1, 1]]),
         "NL_nbr_0_feature": f32([[2, 3], [1, 1]]),
         "NL_nbr_0_weight": f32([[1], [1]])}
    for distance_type in ("l1", "l2", "cosine"):
        model = GraphRegularization(
            base, _config(1, distance_type=distance_type, sum_over_axis=-1))
        model.compile(loss="mse")
        logs = model.evaluate(x, f32([[0], [0]]), verbose=0,
                              return_dict=True)
        assert_allclose(logs["scaled_graph_loss"], 0.0, atol=1e-6)


# -- Beyond 1.4 ----------------------------------------------------------------


def _two_layer(scale=2.0):
    """embedding = x w (w as above), output = scale * embedding."""
    x = keras.Input((2,), name="feature")
    embedding = _dense(name="embedding")(x)
    output = keras.layers.Dense(
        1, use_bias=False, name="output",
        kernel_initializer=keras.initializers.Constant([[scale]]))(embedding)
    return keras.Model(x, output)


@pytest.mark.parametrize("embedding_layer, graph_loss", [
    (None, 16.0),  # (2 * (-1) - 2 * 1)^2
    ("embedding", 4.0),  # (-1 - 1)^2
])
def test_embedding_layer_is_regularized(embedding_layer, graph_loss):
    model = GraphRegularization(_two_layer(), _config(1),
                                embedding_layer=embedding_layer)
    model.compile(loss="mse")
    x, y = _g_batch(1)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert_allclose(logs["scaled_graph_loss"], graph_loss)
    assert_allclose(model.predict(x, verbose=0), [[-2.]])


def test_embedding_layer_errors():
    with pytest.raises(ValueError, match="`embedding_layer='nope'` is not a "
                       r"layer of the base model. Its layers are: "):
        GraphRegularization(_two_layer(), _config(1), embedding_layer="nope")
    with pytest.raises(ValueError, match="needs a functional or Sequential "
                       "base model with defined inputs"):
        GraphRegularization(_Subclassed(), _config(1),
                            embedding_layer="dense")


def test_predict_and_evaluate_without_neighbors():
    base = _linear("functional")
    model = GraphRegularization(base, _config(2))
    model.compile(loss="mse", metrics=["mae"])
    x = f32([[2, 3], [1, 0], [0, 1]])
    y = f32([[0], [1], [2]])
    expected = x @ f32(W0)
    assert_allclose(model.predict({"feature": x}, verbose=0), expected)
    assert_allclose(model.predict(x, verbose=0), expected)  # Plain tensor.
    logs = model.evaluate({"feature": x}, y, verbose=0, return_dict=True)
    base_logs = base.evaluate(x, y, verbose=0, return_dict=True)
    mse = float(np.mean((expected - y) ** 2))
    assert_allclose([logs["loss"], base_logs["loss"]], [mse, mse])
    assert_allclose(logs["mae"], base_logs["mae"])
    assert logs["scaled_graph_loss"] == 0.0


def test_plain_keras_data_trains_the_base_model():
    base = _linear("sequential")
    model = GraphRegularization(base, _config(1))
    _fit_one_step(model, f32([[2, 3]]), f32([[0]]))  # No neighbours.
    assert_allclose(base.trainable_variables[0], [[4.04], [-2.94]],
                    rtol=1e-6)


def test_extra_features_without_neighbors_are_ignored():
    # 1.4 needed neighbour copies of every feature, e.g. NL_num_nbrs.
    x, y = _g_batch(1)
    x["NL_num_nbrs"] = np.array([[1]], "int64")
    x["id"] = np.array([[7]], "int64")
    model = GraphRegularization(_linear("functional"), _config(1))
    model.compile(loss="mse")
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert_allclose(logs["scaled_graph_loss"], 4.0)


def test_save_and_load(tmp_path):
    base = _two_layer()
    model = GraphRegularization(base, _config(2, 0.5, sum_over_axis=-1),
                                embedding_layer="embedding",
                                neighbor_pass="separate")
    _fit_one_step(model, *_g_batch(2))
    path = str(tmp_path / "graph_model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, GraphRegularization)
    assert loaded.graph_reg_config == model.graph_reg_config
    assert loaded.embedding_layer == "embedding"
    assert loaded.neighbor_pass == "separate"
    x, y = _g_batch(2)
    assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert_allclose(loaded.base_model.get_layer("embedding").kernel,
                    base.get_layer("embedding").kernel)
    logs = loaded.evaluate(x, y, verbose=0, return_dict=True)
    expected = model.evaluate(x, y, verbose=0, return_dict=True)
    assert_allclose(logs["scaled_graph_loss"], expected["scaled_graph_loss"])
    assert_allclose(logs["loss"], expected["loss"])


def test_batch_norm_warning():
    base = keras.Sequential([keras.Input((2,), name="feature"),
                             keras.layers.BatchNormalization(),
                             keras.layers.Dense(1)])
    with pytest.warns(UserWarning, match="neighbor_pass='separate'"):
        GraphRegularization(base, _config(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GraphRegularization(base, _config(1), neighbor_pass="separate")
        GraphRegularization(base, _config(0))  # Not regularized.


# -- Bad input ------------------------------------------------------------------


def _call(x, max_neighbors=2):
    model = GraphRegularization(_linear("functional"),
                                _config(max_neighbors))
    return model(x, training=True)


def test_max_neighbors_larger_than_the_neighbors_present():
    x, _ = _g_batch(1)
    with pytest.raises(utils.NeighborFeatureError,
                       match=r"Neighbour feature 'NL_nbr_1_feature' is "
                       r"missing: max_neighbors=2 needs NL_nbr_0_feature \.\. "
                       r"NL_nbr_1_feature for sample feature 'feature'"):
        _call(x)


def test_missing_weight():
    x, _ = _g_batch(2)
    del x["NL_nbr_1_weight"]
    with pytest.raises(utils.NeighborFeatureError,
                       match="Neighbour weight 'NL_nbr_1_weight' is missing"):
        _call(x)


def test_weight_not_scalar():
    x, _ = _g_batch(1)
    x["NL_nbr_0_weight"] = f32([[1, 1]])
    with pytest.raises(utils.NeighborFeatureError,
                       match=r"'NL_nbr_0_weight' must be one scalar per "
                       r"example, shape \[batch, 1\] or \[batch\]. Received "
                       r"shape \(1, 2\)"):
        _call(x, max_neighbors=1)


def test_neighbor_shape_does_not_match():
    x, _ = _g_batch(1)
    x["NL_nbr_0_feature"] = f32([[2.5, 3, 1]])
    with pytest.raises(utils.NeighborFeatureError,
                       match=r"'NL_nbr_0_feature' has shape \(1, 3\) but "
                       r"sample feature 'feature' has shape \(1, 2\)"):
        _call(x, max_neighbors=1)


@pytest.mark.parametrize("weight, example", [
    (-0.5, r"-0\.5"), (np.nan, "nan"), (np.inf, "inf")])
def test_bad_weights(weight, example):
    x, _ = _g_batch(1)
    x["NL_nbr_0_weight"] = f32([[weight]])
    with pytest.raises(ValueError, match=r"Neighbour weights "
                       r"\(NL_nbr_<i>_weight\) must be finite and >= 0. "
                       r"Received 1 bad weight\(s\) \(NaN, Inf or "
                       r"negative\), e.g. " + example):
        _call(x, max_neighbors=1)


_BACKEND = keras.config.backend()


@pytest.mark.parametrize("jit", [False, True] if _BACKEND != "torch"
                         else [False])
@pytest.mark.parametrize("weight", [-0.5, np.nan])
def test_bad_weights_stop_a_compiled_fit(jit, weight):
    # Inside a compiled step the values are unknown when tracing: a runtime
    # check raises when the step runs. TensorFlow with XLA drops runtime
    # checks, so there the step trains (documented).
    x, y = _g_batch(1)
    x["NL_nbr_0_weight"] = f32([[weight]])
    base = _linear("functional")
    model = GraphRegularization(base, _config(1))
    model.compile(keras.optimizers.SGD(0.01), loss="mse", jit_compile=jit)
    if jit and _BACKEND == "tensorflow":
        model.fit(x, y, batch_size=1, verbose=0)
        return
    with pytest.raises(Exception, match=r"NL_nbr_<i>_weight\) must be "
                       "finite and >= 0"):
        model.fit(x, y, batch_size=1, verbose=0)


def test_negative_multiplier():
    with pytest.raises(ValueError,
                       match="`multiplier` must be >= 0. Received: "
                       "multiplier=-0.1"):
        _config(1, multiplier=-0.1)


def test_bad_constructor_arguments():
    with pytest.raises(TypeError, match="`graph_reg_config` must be an "
                       "nsl.configs.GraphRegConfig"):
        GraphRegularization(_linear("sequential"), _config(1).neighbor_config)
    with pytest.raises(ValueError, match=r"`neighbor_pass` must be one of "
                       r"\['batched', 'separate'\]. Received: "
                       r"neighbor_pass='loop'"):
        GraphRegularization(_linear("sequential"), neighbor_pass="loop")


def test_multi_output_base_model_needs_an_embedding_layer():
    x = keras.Input((2,), name="feature")
    base = keras.Model(x, [keras.layers.Dense(1)(x), keras.layers.Dense(1)(x)])
    with pytest.raises(ValueError, match="The base model has 2 outputs"):
        _ = GraphRegularization(base, _config(1))(_g_batch(1)[0])


def test_default_config_does_not_regularize():
    model = GraphRegularization(_linear("sequential"))
    assert model.graph_reg_config == configs.GraphRegConfig()
    x, _ = _g_batch(1)
    assert_allclose(to_numpy(model(x)), [[-1.]])


@pytest.mark.parametrize("kind, keys", [
    ("functional", r"GraphRegularization takes the labels as `y`.*Input keys "
                   r"that are not model inputs or neighbour features: "
                   r"\['label'\]"),
    ("subclassed", r"Input key\(s\) \['label'\] have no neighbour copies "
                   r"\(e.g. 'NL_nbr_0_label'\).*GraphRegularization takes "
                   r"the labels as `y`")])
def test_labels_inside_the_input_dict(kind, keys):
    # AdversarialRegularization's format (labels in the dict, no y).
    x, y = _g_batch(1)
    x["label"] = y
    model = GraphRegularization(_linear(kind), _config(1))
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    with pytest.raises(ValueError, match=keys):
        model.fit(x, batch_size=1, verbose=0)


# -- New in this version: contrastive loss, unlabeled rows ------------------


def _hidden_model():
    x = keras.Input((2,), name="feature")
    hidden = keras.layers.Dense(
        3, name="hidden", kernel_initializer=keras.initializers.Constant(
            [[1., -1., 0.5], [0.5, 2., -1.]]))(x)
    return keras.Model(x, keras.layers.Dense(1, use_bias=False)(hidden))


def _batch_of_three():
    x = {"feature": f32([[1, 2], [3, -1], [0, 1]]),
         "NL_nbr_0_feature": f32([[1, 1.5], [2, -1], [5, 5]]),
         "NL_nbr_0_weight": f32([[1], [0.5], [0]])}
    return x, f32([[1], [0], [2]])


def test_contrastive_graph_loss_on_a_hidden_layer():
    from neural_structured_learning.lib import contrastive  # pylint: disable=import-outside-toplevel
    config = configs.make_graph_reg_config(
        max_neighbors=1, multiplier=0.3, contrastive_temperature=0.2)
    base = _hidden_model()
    model = GraphRegularization(base, config, embedding_layer="hidden")
    model.compile(keras.optimizers.SGD(0.0), loss="mse")
    x, y = _batch_of_three()
    logs = model.evaluate(x, y, batch_size=3, verbose=0, return_dict=True)
    hidden = keras.Model(base.inputs, base.get_layer("hidden").output)
    expected = 0.3 * contrastive.neighbor_info_nce(
        hidden(x["feature"]), hidden(x["NL_nbr_0_feature"]),
        x["NL_nbr_0_weight"], 0.2)
    assert_allclose(logs["scaled_graph_loss"], expected, rtol=1e-5)
    assert float(to_numpy(expected)) > 0.01
    # The default (NSL 1.4's L2 distance) differs.
    plain = GraphRegularization(
        _hidden_model(), configs.make_graph_reg_config(
            max_neighbors=1, multiplier=0.3), embedding_layer="hidden")
    plain.compile(keras.optimizers.SGD(0.0), loss="mse")
    plain_logs = plain.evaluate(x, y, batch_size=3, verbose=0,
                                return_dict=True)
    assert abs(plain_logs["scaled_graph_loss"]
               - logs["scaled_graph_loss"]) > 1e-3


def test_unlabeled_rows_train_the_graph_loss_only():
    # NeighborBatchDataset(seeds='all', unlabeled_label=-1) marks unlabeled
    # nodes with -1; the labeled loss averages over labeled rows, the graph
    # loss over every row.
    from neural_structured_learning.keras import neighbor_batches  # pylint: disable=import-outside-toplevel
    features = f32([[2, 3], [2.5, 3], [2, 2], [1, 0]])
    labels = np.array([[0.], [-1.], [1.], [-1.]], "float32")
    mask = np.array([True, False, True, False])
    edges = (np.array([0, 1, 2, 3]), np.array([1, 0, 3, 2]))
    config = _config(1)
    data = neighbor_batches.NeighborBatchDataset(
        features, labels, edges, config.neighbor_config, seeds="all",
        label_mask=mask, unlabeled_label=-1, batch_size=4, shuffle=False,
        seed=0)
    x, y = data[0]
    assert_allclose(y, [[0.], [-1.], [1.], [-1.]])
    model = GraphRegularization(_linear("functional"), config,
                                unlabeled_label=-1)
    model.compile(keras.optimizers.SGD(0.0), loss="mse")
    logs = model.evaluate(data, verbose=0, return_dict=True)
    f = features @ f32(W0)  # [-1, -1.5, 2, 4]
    labeled = np.mean((f[[0, 2]] - labels[[0, 2]]) ** 2)
    graph = np.mean([(f[0] - f[1]) ** 2, (f[1] - f[0]) ** 2,
                     (f[2] - f[3]) ** 2, (f[3] - f[2]) ** 2])
    assert_allclose(logs["scaled_graph_loss"], graph, rtol=1e-5)
    assert_allclose(logs["loss"], labeled + graph, rtol=1e-5)
    # Without the marker the -1 labels would count as labels.
    config_round_trip = GraphRegularization.from_config(model.get_config())
    assert config_round_trip.unlabeled_label == -1


@pytest.mark.parametrize("from_logits", [True, False])
def test_propagation_graph_loss(from_logits):
    # PropagationConfig: multiplier * (CE(y, z) on labeled rows + mean over
    # every row of KL(sharpen(z) || p)), z the neighbourhood mean of the
    # outputs (logits, or softmax probabilities with from_logits=False, as
    # the NSL tutorials' models).
    from neural_structured_learning.keras import neighbor_batches  # pylint: disable=import-outside-toplevel
    features = f32([[1, 0], [0, 1], [1, 1], [2, -1]])
    labels = np.array([0, -1, 1, -1])
    edges = (np.array([0, 0, 1, 2, 3]), np.array([1, 2, 0, 3, 2]),
             np.array([1.0, 3.0, 2.0, 1.0, 1.0], "float32"))
    config = configs.make_graph_reg_config(
        max_neighbors=2, multiplier=0.7, propagation_self_weight=0.25,
        propagation_temperature=0.5)
    data = neighbor_batches.NeighborBatchDataset(
        features, labels, edges, config.neighbor_config, seeds="all",
        unlabeled_label=-1, batch_size=4, shuffle=False, seed=0)
    kernel = f32([[1.0, -1.0], [0.5, 2.0]])
    inputs = keras.Input((2,), name="feature")
    base = keras.Model(inputs, keras.layers.Dense(
        2, use_bias=False, activation=None if from_logits else "softmax",
        kernel_initializer=keras.initializers.Constant(kernel))(inputs))
    model = GraphRegularization(base, config, unlabeled_label=-1)
    model.compile(keras.optimizers.SGD(0.0), loss=keras.losses.
                  SparseCategoricalCrossentropy(from_logits=from_logits))
    logs = model.evaluate(data, verbose=0, return_dict=True)

    def log_softmax(x):
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    f = features @ kernel
    if not from_logits:
        f = np.exp(log_softmax(f))
    neighbors = {0: ([1, 2], [1.0, 3.0]), 1: ([0], [2.0]), 2: ([3], [1.0]),
                 3: ([2], [1.0])}
    z = np.stack([0.25 * f[i] + 0.75 * np.average(f[n], axis=0, weights=w)
                  for i, (n, w) in sorted(neighbors.items())])
    log_z, log_f = ((log_softmax(z), log_softmax(f)) if from_logits
                    else (np.log(z), np.log(f)))
    labeled_z = -np.mean([log_z[0, 0], log_z[2, 1]])
    q = np.exp(log_softmax(log_z / 0.5))  # Sharpened by the temperature.
    kl = np.mean(np.sum(q * (np.log(q) - log_f), -1))
    assert_allclose(logs["scaled_graph_loss"], 0.7 * (labeled_z + kl),
                    rtol=1e-5)
    labeled_f = -np.mean([log_f[0, 0], log_f[2, 1]])
    assert_allclose(logs["loss"], labeled_f + 0.7 * (labeled_z + kl),
                    rtol=1e-5)
    # Not `multiplier * clean loss`: the term sees the neighbours.
    assert abs(labeled_z - labeled_f) > 0.1
    restored = GraphRegularization.from_config(model.get_config())
    assert restored.graph_reg_config.propagation_config == (
        configs.PropagationConfig(0.25, 0.5))


def test_propagation_errors():
    config = configs.make_graph_reg_config(max_neighbors=1,
                                           propagation_self_weight=0.1)
    with pytest.raises(ValueError, match="embedding_layer"):
        GraphRegularization(_hidden_model(), config, embedding_layer="hidden")


def test_propagation_carries_labels_to_unlabeled_nodes():
    # Two cliques of 8 nodes, one labeled node each, features that say
    # nothing about the class. Trained on the labeled nodes alone, the MLP
    # guesses the others; with the propagation loss on every node, the
    # labels reach the unlabeled nodes of each clique through z.
    from neural_structured_learning.keras import neighbor_batches  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(0)
    features = rng.normal(size=(16, 6)).astype("float32")
    classes = np.repeat([0, 1], 8)
    labels = np.full(16, -1)
    labels[[0, 8]] = [0, 1]
    pairs = [(i, j) for c in (0, 8) for i in range(c, c + 8)
             for j in range(c, c + 8) if i != j]
    edges = tuple(np.array(e) for e in zip(*pairs))
    config = configs.make_graph_reg_config(
        max_neighbors=7, multiplier=1.0, propagation_self_weight=0.1)
    data = neighbor_batches.NeighborBatchDataset(
        features, labels, edges, config.neighbor_config, seeds="all",
        unlabeled_label=-1, batch_size=16, seed=0)
    accuracy = {}
    for name, graph in (("plain", False), ("propagation", True)):
        keras.utils.set_random_seed(0)
        base = keras.Sequential([keras.Input((6,), name="feature"),
                                 keras.layers.Dense(16, "relu"),
                                 keras.layers.Dense(2)])
        model = GraphRegularization(
            base, config if graph else None, unlabeled_label=-1)
        model.compile(keras.optimizers.Adam(0.05), loss=keras.losses.
                      SparseCategoricalCrossentropy(from_logits=True))
        model.fit(data, epochs=60, verbose=0)
        predicted = to_numpy(base(features)).argmax(-1)
        accuracy[name] = np.mean(predicted == classes)
    assert accuracy["propagation"] == 1.0, accuracy
    assert accuracy["plain"] < 0.9, accuracy
