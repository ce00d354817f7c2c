"""Tests for neighbor_features.py (NSL 1.4's neighbor_features_test cases)."""

import keras
import numpy as np
import pytest

from neural_structured_learning import configs
from neural_structured_learning._testing import assert_allclose
from neural_structured_learning._testing import to_numpy
from neural_structured_learning.keras import layers
from neural_structured_learning.lib import utils


def _packed(num_neighbors=3):
    # Sample F0 = 11; neighbour i is 22, 33, 44 with weights .25, .75, 1.
    features = {"F0": np.full((2, 2), 11, "float32")}
    for i, (value, weight) in enumerate([(22, .25), (33, .75), (44, 1.)]):
        if i < num_neighbors:
            features[f"NL_nbr_{i}_F0"] = np.full((2, 2), value, "float32")
            features[f"NL_nbr_{i}_weight"] = np.full((2, 1), weight,
                                                     "float32")
    return features


def test_make_missing_neighbor_inputs():
    config = configs.GraphNeighborConfig(max_neighbors=2)
    inputs = {"words": keras.Input((5,), name="words", dtype="int64"),
              "NL_nbr_0_words": keras.Input((5,), name="NL_nbr_0_words",
                                            dtype="int64")}
    new = layers.make_missing_neighbor_inputs(config, inputs)
    assert sorted(new) == ["NL_nbr_0_weight", "NL_nbr_1_weight",
                           "NL_nbr_1_words"]
    assert tuple(new["NL_nbr_1_words"].shape) == (None, 5)
    assert new["NL_nbr_1_words"].dtype == "int64"
    assert new["NL_nbr_1_words"].name == "NL_nbr_1_words"
    assert tuple(new["NL_nbr_0_weight"].shape) == (None, 1)
    assert new["NL_nbr_0_weight"].dtype == "float32"


def test_make_missing_neighbor_inputs_rejects_non_dict():
    with pytest.raises(TypeError, match="`inputs` must be a dict"):
        layers.make_missing_neighbor_inputs(
            configs.GraphNeighborConfig(max_neighbors=1),
            [keras.Input((2,))])


def test_unpacks_sample_major():
    layer = layers.NeighborFeatures(
        configs.GraphNeighborConfig(max_neighbors=3))
    sample, neighbors, weights = layer(_packed())
    assert_allclose(sample["F0"], np.full((2, 2), 11))
    assert_allclose(neighbors["F0"][:, 0], [22, 33, 44, 22, 33, 44])
    assert_allclose(weights, [[.25], [.75], [1.], [.25], [.75], [1.]])


def test_keep_rank_false_stacks_neighbors():
    layer = layers.NeighborFeatures(
        configs.GraphNeighborConfig(max_neighbors=2))
    _, neighbors, weights = layer(_packed(), keep_rank=False)
    assert to_numpy(neighbors["F0"]).shape == (2, 2, 2)
    assert_allclose(weights, [[[.25], [.75]], [[.25], [.75]]])


def test_feature_names_restrict_the_sample_features():
    features = _packed(1)
    features["id"] = np.array([[1], [2]], "int64")  # Has no neighbour copy.
    layer = layers.NeighborFeatures(
        configs.GraphNeighborConfig(max_neighbors=1), feature_names=["F0"])
    sample, neighbors, _ = layer(features)
    assert sorted(sample) == ["F0"] and sorted(neighbors) == ["F0"]


def test_missing_neighbor_names_the_feature():
    layer = layers.NeighborFeatures(
        configs.GraphNeighborConfig(max_neighbors=3))
    with pytest.raises(utils.NeighborFeatureError,
                       match="'NL_nbr_2_F0' is missing"):
        layer(_packed(num_neighbors=2))


def test_functional_model_gets_the_neighbor_inputs():
    config = configs.GraphNeighborConfig(max_neighbors=2)
    inputs = {"F0": keras.Input((2,), name="F0")}
    sample, neighbors, weights = layers.NeighborFeatures(config)(inputs)
    assert sorted(inputs) == ["F0", "NL_nbr_0_F0", "NL_nbr_0_weight",
                              "NL_nbr_1_F0", "NL_nbr_1_weight"]
    model = keras.Model(inputs, [sample["F0"], neighbors["F0"], weights])
    outputs = model(_packed(2))
    assert_allclose(outputs[1][:, 0], [22, 33, 22, 33])
    assert_allclose(outputs[2], [[.25], [.75], [.25], [.75]])


def test_config_round_trip():
    layer = layers.NeighborFeatures(
        configs.GraphNeighborConfig(prefix="nbr_", max_neighbors=2),
        feature_names={"b", "a"}, name="nbrs")
    config = layer.get_config()
    assert config["neighbor_config"] == {"prefix": "nbr_",
                                         "weight_suffix": "_weight",
                                         "max_neighbors": 2}
    assert config["feature_names"] == ["a", "b"]
    clone = layers.NeighborFeatures.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer))
    assert restored.neighbor_config == layer.neighbor_config


@pytest.mark.parametrize("weight", [-1., np.nan, np.inf])
def test_bad_weights_raise(weight):
    features = _packed(2)
    features["NL_nbr_1_weight"][1, 0] = weight
    layer = layers.NeighborFeatures(
        configs.GraphNeighborConfig(max_neighbors=2, prefix="NL_nbr_"))
    with pytest.raises(ValueError, match=r"Neighbour weights "
                       r"\(NL_nbr_<i>_weight\) must be finite and >= 0. "
                       r"Received 1 bad weight"):
        layer(features)


def test_bad_weights_raise_in_a_functional_model():
    config = configs.GraphNeighborConfig(max_neighbors=1)
    inputs = {"F0": keras.Input((2,), name="F0")}
    _, _, weights = layers.NeighborFeatures(config)(inputs)
    model = keras.Model(inputs, weights)
    features = _packed(1)
    assert_allclose(model.predict(features, verbose=0), [[.25], [.25]])
    features["NL_nbr_0_weight"][0, 0] = np.nan
    with pytest.raises(Exception, match="must be finite and >= 0"):
        model.predict(features, verbose=0)
