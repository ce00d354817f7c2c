"""`from_config(get_config())` round-trips for every wrapper and layer.

The classes are found by introspection (`nsl.keras.__all__`,
`nsl.keras.layers.__all__`), so a new wrapper or layer fails
`test_every_*_has_a_case` until it gets a case here. For each: the config is
JSON-serialisable, `from_config` (and Keras's own
`serialize_keras_object`/`deserialize_keras_object`, i.e. what `.keras` files
use) rebuilds an object of the same class whose config equals the original's,
and given the original's weights the rebuilt object gives the same outputs.
"""

import copy
import json

import keras
import numpy as np
import pytest
from numpy.testing import assert_allclose

import neural_structured_learning as nsl
from neural_structured_learning._testing import to_numpy

_RNG = np.random.default_rng(0)


def _f32(*shape):
    return _RNG.normal(size=shape).astype("float32")


def _public_classes(module, base):
    return {obj for obj in (getattr(module, name) for name in module.__all__)
            if isinstance(obj, type) and issubclass(obj, base)}


def _base_model():
    inputs = keras.Input((4,), name="feature")
    hidden = keras.layers.Dense(5, "relu", name="embedding")(inputs)
    outputs = keras.layers.Dense(3, name="logits")(hidden)
    return keras.Model(inputs, outputs, name="base")


# Non-default arguments wherever a wrapper or layer takes them, so a field
# dropped from `get_config` (or not rebuilt by `from_config`) is noticed.
def _adversarial():
    return nsl.keras.AdversarialRegularization(
        _base_model(), label_keys=["y"], sample_weight_key="w",
        adv_config=nsl.configs.make_adv_reg_config(
            multiplier=0.5, adv_step_size=0.1, adv_grad_norm="infinity",
            clip_value_min=-1.0, clip_value_max=1.0, pgd_iterations=2,
            pgd_epsilon=0.2, random_init=True, feature_mask=0.5),
        seed=3, fuse_clean_pass=False, name="adv")


def _virtual_adversarial():
    return nsl.keras.VirtualAdversarialRegularization(
        _base_model(),
        vat_config=nsl.configs.VirtualAdvConfig(
            nsl.configs.AdvNeighborConfig(adv_step_size=2.0,
                                          adv_grad_norm="l1"),
            nsl.configs.DistanceConfig("kl_divergence", sum_over_axis=-1),
            num_approx_steps=2, approx_difference=1e-3),
        multiplier=0.5, label_keys=["y"], sample_weight_key="w",
        label_mask_key="m", unlabeled_label=-2, entropy_weight=0.1,
        from_logits=True, seed=4, perturbed_pass_training=False, name="vat")


def _graph():
    return nsl.keras.GraphRegularization(
        _base_model(), nsl.configs.make_graph_reg_config(
            max_neighbors=2, multiplier=0.5, distance_type="l1",
            sum_over_axis=-1),
        embedding_layer="embedding", neighbor_pass="separate", name="graph")


def _combined():
    terms = nsl.keras.terms
    return nsl.keras.RegularizedModel(
        _base_model(), terms=[
            terms.GraphTerm(nsl.configs.make_graph_reg_config(
                max_neighbors=2, multiplier=0.5, distance_type="l1"),
                embedding_layer="embedding", neighbor_pass="separate",
                name="graph_term"),
            terms.AdversarialTerm(nsl.configs.make_adv_reg_config(
                multiplier=0.3, adv_step_size=0.1, pgd_iterations=2,
                pgd_epsilon=0.15),
                fuse_clean_pass=False, name="adv_term"),
            terms.VirtualAdversarialTerm(multiplier=0.2, from_logits=True,
                                         perturbed_pass_training=False),
            terms.EntropyTerm(0.1, from_logits=True)],
        label_keys=["y"], sample_weight_key="w", label_mask_key="m",
        unlabeled_label=-2, base_with_labels_in_features=False, seed=5,
        name="combined")


_GRAPH_INPUTS = {"feature": _f32(2, 4),
                 "NL_nbr_0_feature": _f32(2, 4),
                 "NL_nbr_0_weight": np.ones((2, 1), "float32"),
                 "NL_nbr_1_feature": _f32(2, 4),
                 "NL_nbr_1_weight": np.full((2, 1), 0.5, "float32")}

# class -> (factory, inputs of an inference call).
_WRAPPERS = {
    nsl.keras.AdversarialRegularization: (_adversarial, _f32(2, 4)),
    nsl.keras.VirtualAdversarialRegularization: (
        _virtual_adversarial, _f32(2, 4)),
    nsl.keras.GraphRegularization: (_graph, _GRAPH_INPUTS),
    nsl.keras.RegularizedModel: (_combined, _GRAPH_INPUTS),
}


def _pairwise_distance():
    return nsl.keras.layers.PairwiseDistance(
        nsl.configs.DistanceConfig("cosine", nsl.configs.Reduction.MEAN,
                                   sum_over_axis=-1, transform_fn="softmax"),
        name="distance")


def _neighbor_features():
    return nsl.keras.layers.NeighborFeatures(
        nsl.configs.GraphNeighborConfig("nbr_", "_w", 2),
        feature_names=["f"], weight_dtype="float32", name="neighbors")


_NEIGHBOR_INPUTS = {"f": _f32(2, 3), "g": _f32(2, 1),
                    "nbr_0_f": _f32(2, 3), "nbr_0_w": np.ones((2, 1), "f4"),
                    "nbr_1_f": _f32(2, 3), "nbr_1_w": np.zeros((2, 1), "f4")}

# class -> (factory, positional call arguments).
_LAYERS = {
    nsl.keras.layers.PairwiseDistance: (
        _pairwise_distance, (_f32(2, 3), _f32(2, 2, 3),
                             np.array([[[1.0], [0.5]], [[0.0], [2.0]]],
                                      "float32"))),
    nsl.keras.layers.NeighborFeatures: (
        _neighbor_features, (_NEIGHBOR_INPUTS,)),
}


def test_every_wrapper_has_a_case():
    assert _public_classes(nsl.keras, keras.Model) == set(_WRAPPERS)


def test_every_layer_has_a_case():
    layers = _public_classes(nsl.keras.layers, keras.layers.Layer)
    layers |= _public_classes(nsl.keras, keras.layers.Layer) - set(_WRAPPERS)
    assert layers == set(_LAYERS)


def _json(config):
    """`config` through JSON (which Keras's own configs need: they hold
    tuples that come back as lists)."""
    return json.loads(json.dumps(config))


def _rebuilt(original, how):
    """`original` rebuilt from its config."""
    config = original.get_config()
    if how == "from_config":
        # A copy: Keras's `from_config` / `deserialize_keras_object` consume
        # nested configs (here the base model's) as they read them.
        rebuilt = type(original).from_config(copy.deepcopy(config))
    else:  # What `model.save` / `keras.saving.load_model` use.
        rebuilt = keras.saving.deserialize_keras_object(
            _json(keras.saving.serialize_keras_object(original)))
    assert type(rebuilt) is type(original)
    assert _json(rebuilt.get_config()) == _json(config)
    return rebuilt


def _assert_same_outputs(a, b):
    flat_a, flat_b = keras.tree.flatten(a), keras.tree.flatten(b)
    assert len(flat_a) == len(flat_b)
    for x, y in zip(flat_a, flat_b):
        assert_allclose(to_numpy(x), to_numpy(y), rtol=1e-6, atol=1e-6)


_HOW = ["from_config", "serialize_keras_object"]


@pytest.mark.parametrize("how", _HOW)
@pytest.mark.parametrize("cls", list(_WRAPPERS), ids=lambda c: c.__name__)
def test_wrapper_round_trip(cls, how):
    make, inputs = _WRAPPERS[cls]
    original = make()
    expected = original(inputs)
    rebuilt = _rebuilt(original, how)
    for name in ("adv_config", "vat_config", "graph_reg_config"):
        if hasattr(original, name):
            assert getattr(rebuilt, name) == getattr(original, name)
    assert rebuilt.base_model is not original.base_model
    assert (_json(rebuilt.base_model.get_config())
            == _json(original.base_model.get_config()))
    rebuilt(inputs)  # Builds it.
    # Fresh weights differ, so equal outputs below come from the weights.
    assert not np.allclose(to_numpy(rebuilt(inputs)), to_numpy(expected))
    rebuilt.set_weights(original.get_weights())
    _assert_same_outputs(rebuilt(inputs), expected)


@pytest.mark.parametrize("how", _HOW)
@pytest.mark.parametrize("cls", list(_LAYERS), ids=lambda c: c.__name__)
def test_layer_round_trip(cls, how):
    make, args = _LAYERS[cls]
    original = make()
    expected = original(*args)
    rebuilt = _rebuilt(original, how)
    rebuilt(*args)
    rebuilt.set_weights(original.get_weights())
    _assert_same_outputs(rebuilt(*args), expected)
