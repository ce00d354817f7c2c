"""Tests for pairwise_distance.py, against NSL 1.4's values (§9.2 D)."""

import keras
import numpy as np
import pytest
from keras import ops

from neural_structured_learning import configs
from neural_structured_learning._testing import assert_allclose
from neural_structured_learning.keras import layers


def _kl(p, q):  # NSL's KL: sum P log(P + 1e-7) - P log(Q + 1e-7), per row.
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    return (p * np.log(p + 1e-7) - p * np.log(q + 1e-7)).sum(-1)


def f32(x):
    return np.asarray(x, "float32")


def test_default_name():
    assert layers.PairwiseDistance().name == "pairwise_distance"


def test_kl_divergence():
    layer = layers.PairwiseDistance(
        configs.DistanceConfig("kl_divergence", sum_over_axis=-1))
    assert_allclose(layer(f32([.3, .3, .4]), f32([[.9, .05, .05]])),
                    1.039720, rtol=1e-5)
    # Weight 0.5 on both neighbours: 0.5 * mean of the row KLs.
    assert_allclose(
        layer(f32([.1, .4, .5]), f32([[.6, .2, .2], [.9, .01, .09]]), 0.5),
        0.667363, rtol=1e-5)


def test_default_config_is_mean_squared_difference():
    layer = layers.PairwiseDistance()
    sources, targets = f32([[1, 1, 1, 1]]), f32([[[4, 3, 2, 1]]])
    assert_allclose(layer(sources, targets), 3.5)  # mean(9, 4, 1, 0)
    assert_allclose(layer(sources, targets, 2.0), 7.0)
    assert_allclose(layer((sources, targets)), 3.5)
    assert_allclose(layer((sources, targets, 2.0)), 7.0)


def test_sources_are_replicated_sample_major():
    # 2 sources, 4 targets: source 0 against targets 0-1, source 1 2-3.
    sources = f32([[.1, .2, .3, .4], [.25] * 4])
    targets = f32([[.4, .3, .2, .1], [.7, .1, .1, .1], [.1, .1, .1, .7],
                   [.97, .01, .01, .01]])
    layer = layers.PairwiseDistance(configs.DistanceConfig(
        "kl_divergence", configs.Reduction.NONE, sum_over_axis=-1))
    expected = _kl(np.repeat(sources, 2, axis=0), targets)[:, None]
    assert_allclose(layer(sources, targets), expected, rtol=1e-5)


def test_no_targets():
    with pytest.raises(ValueError, match="No targets provided"):
        layers.PairwiseDistance()(f32([[1.]]))


def test_incompatible_shapes():
    layer = layers.PairwiseDistance()
    with pytest.raises(ValueError, match=r"Shapes .* are incompatible"):
        layer(f32([[1, 2]]), f32([[1, 2, 3]]))
    with pytest.raises(ValueError, match=r"must be a multiple of that of "
                       r"`sources` \(2\)"):
        layer(f32([[1, 2], [3, 4]]), f32([[1, 2], [3, 4], [5, 6]]))


@pytest.mark.parametrize("distance_type", configs.DistanceType.all())
def test_every_distance_in_a_functional_model(distance_type):
    # The graph loss of a layer inside a model equals the wrapper's value.
    config = configs.DistanceConfig(distance_type, sum_over_axis=-1,
                                    transform_fn="softmax")
    sources = keras.Input((3,), name="sources")
    targets = keras.Input((3,), name="targets")
    weights = keras.Input((1,), name="weights")
    distance = layers.PairwiseDistance(config)(sources, targets, weights)
    model = keras.Model([sources, targets, weights],
                        ops.reshape(distance, (1,)))
    s = f32([[1, 2, 3], [0, 0, 1]])
    t = f32([[1, 2, 2], [3, 0, 0]])
    w = f32([[1.], [.5]])
    p = np.exp(s) / np.exp(s).sum(-1, keepdims=True)
    q = np.exp(t) / np.exp(t).sum(-1, keepdims=True)
    per_row = {
        "l1": np.abs(p - q).sum(-1),
        "l2": ((p - q) ** 2).sum(-1),
        "cosine": 1 - (p * q).sum(-1) / np.linalg.norm(p, axis=-1)
                  / np.linalg.norm(q, axis=-1),
        "kl_divergence": _kl(p, q),
        "jensen_shannon_divergence": .5 * _kl(p, (p + q) / 2)
                                     + .5 * _kl(q, (p + q) / 2),
    }[distance_type.value]
    expected = (per_row * w[:, 0]).sum() / 2  # SUM_BY_NONZERO_WEIGHTS
    assert_allclose(model([s, t, w])[0], expected, rtol=1e-5)


def test_config_round_trip():
    layer = layers.PairwiseDistance(configs.DistanceConfig(
        "cosine", configs.Reduction.MEAN, -1), name="graph_loss")
    config = layer.get_config()
    assert config["name"] == "graph_loss"
    assert config["distance_config"] == {
        "distance_type": "cosine", "reduction": "weighted_mean",
        "sum_over_axis": -1, "transform_fn": "none"}
    clone = layers.PairwiseDistance.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer))
    assert restored.distance_config == layer.distance_config


def test_rejects_a_non_config():
    with pytest.raises(TypeError, match="`distance_config` must be an "
                       "nsl.configs.DistanceConfig"):
        layers.PairwiseDistance("l2")
