"""Neighbour features: unpacking `NL_nbr_<i>_<name>` inputs in a Keras model.

A packed batch holds, for every sample feature `name` and every neighbour
`i < max_neighbors`, the neighbour's copy `{prefix}{i}_{name}` and its edge
weight `{prefix}{i}{weight_suffix}` (defaults `NL_nbr_` and `_weight`). The
layer here turns that dict into `(sample_features, neighbor_features,
neighbor_weights)` (see `nsl.lib.unpack_neighbor_features`); the function
creates the extra `keras.Input`s such a functional model needs.
"""

import attr
import keras

from neural_structured_learning.configs import configs
from neural_structured_learning.lib import utils

_PACKAGE = "neural_structured_learning"


def _neighbor_config(neighbor_config):
    if neighbor_config is None:
        return configs.GraphNeighborConfig()
    if isinstance(neighbor_config, dict):
        return configs.GraphNeighborConfig.from_config(neighbor_config)
    if not isinstance(neighbor_config, configs.GraphNeighborConfig):
        raise TypeError(
            "`neighbor_config` must be an nsl.configs.GraphNeighborConfig. "
            f"Received: {type(neighbor_config).__name__}")
    return attr.evolve(neighbor_config)


def _sample_names(neighbor_config, inputs, feature_names=None):
    names = [k for k in inputs if not k.startswith(neighbor_config.prefix)]
    if feature_names is not None:
        names = [k for k in names if k in feature_names]
    return names


def make_missing_neighbor_inputs(neighbor_config, inputs,
                                 weight_dtype="float32"):
    """Creates the `keras.Input`s of neighbour features and weights.

    For every `i < max_neighbors` and every sample input `name` (a key of
    `inputs` without the neighbour prefix), creates `{prefix}{i}_{name}`
    (same shape, batch size, dtype and sparseness as `inputs[name]`) and
    `{prefix}{i}{weight_suffix}` (shape `(1,)`, `weight_dtype`), unless
    `inputs` already has that key.

    Args:
        neighbor_config: a `GraphNeighborConfig` (prefix, weight suffix and
            `max_neighbors`).
        inputs: a dict of `keras.Input`s keyed by feature name.
        weight_dtype: dtype of the weight inputs.

    Returns:
        A dict of the new `keras.Input`s, keyed (and named) by feature name.

    Example:
    >>> config = nsl.configs.GraphNeighborConfig(max_neighbors=1)
    >>> inputs = {'words': keras.Input((1433,), name='words')}
    >>> sorted(make_missing_neighbor_inputs(config, inputs))
    ['NL_nbr_0_weight', 'NL_nbr_0_words']
    """
    neighbor_config = _neighbor_config(neighbor_config)
    if not isinstance(inputs, dict):
        raise TypeError(
            "`inputs` must be a dict of keras.Input keyed by feature name. "
            f"Received: {type(inputs).__name__}")
    new_inputs = {}
    for i in range(neighbor_config.max_neighbors):
        for name in _sample_names(neighbor_config, inputs):
            key = utils.neighbor_feature_name(neighbor_config, i, name)
            if key in inputs:
                continue
            tensor = inputs[name]
            new_inputs[key] = keras.Input(
                shape=tuple(tensor.shape[1:]), batch_size=tensor.shape[0],
                dtype=tensor.dtype, sparse=getattr(tensor, "sparse", False),
                ragged=getattr(tensor, "ragged", False), name=key)
        key = utils.neighbor_weight_name(neighbor_config, i)
        if key not in inputs:
            new_inputs[key] = keras.Input(shape=(1,), dtype=weight_dtype,
                                          name=key)
    return new_inputs


def _is_symbolic(value):
    return isinstance(value, keras.KerasTensor)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NeighborFeatures(keras.layers.Layer):
    """Splits a packed feature dict into sample, neighbours and weights.

    `call(inputs)` returns `nsl.lib.unpack_neighbor_features(inputs,
    neighbor_config, keep_rank)`:

    * `sample_features`: `{name: [B, ...]}`, the keys without the prefix;
    * `neighbor_features`: `{name: [B * N, ...]}` merged sample-major
      (s0n0, s0n1, ..., s1n0, ...), or `[B, N, ...]` with `keep_rank=False`;
    * `neighbor_weights`: `[B * N, 1]` (or `[B, N, 1]`), None when
      `max_neighbors == 0`.

    In a functional model, calling the layer on a dict of `keras.Input`s adds
    the missing neighbour inputs to that dict (as NSL 1.4 did), so
    `keras.Model(inputs, ...)` sees them.

    Args:
        neighbor_config: a `GraphNeighborConfig` (default
            `GraphNeighborConfig()`); copied.
        feature_names: optional names of the sample features that have
            neighbours; other sample features are left out.
        weight_dtype: dtype of the weight inputs created in a functional
            model (default float32); also the layer's dtype when `dtype` is
            not given.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: a dict of tensors `[B, ...]`.
        keep_rank: merge neighbours into the batch axis (True) or stack them
            on a new axis 1 (False).

    Raises:
        NeighborFeatureError (a KeyError and ValueError): when a neighbour
            feature or weight is missing or malformed.

    Example:
    >>> inputs = {'words': keras.Input((1433,), name='words')}
    >>> layer = NeighborFeatures(GraphNeighborConfig(max_neighbors=2))
    >>> sample, neighbors, weights = layer(inputs)
    >>> sorted(inputs)  # The neighbour inputs were added.
    ['NL_nbr_0_weight', 'NL_nbr_0_words', 'NL_nbr_1_weight', ...]
    """

    def __init__(self, neighbor_config=None, feature_names=None,
                 weight_dtype=None, **kwargs):
        if weight_dtype is not None:
            kwargs.setdefault("dtype", weight_dtype)
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.neighbor_config = _neighbor_config(neighbor_config)
        if isinstance(feature_names, str):
            feature_names = [feature_names]
        self.feature_names = (None if feature_names is None
                              else sorted(set(feature_names)))
        self.weight_dtype = weight_dtype
        self.built = True  # No state.

    def _filter(self, inputs):
        if not isinstance(inputs, dict):
            raise TypeError(
                "NeighborFeatures expects a dict of features keyed by name. "
                f"Received: {type(inputs).__name__}")
        prefix = self.neighbor_config.prefix
        keep = set(_sample_names(self.neighbor_config, inputs,
                                 self.feature_names))
        return {k: v for k, v in inputs.items()
                if k in keep or k.startswith(prefix)}

    def __call__(self, inputs, *args, **kwargs):
        filtered = self._filter(inputs)
        if any(_is_symbolic(v) for v in filtered.values()):
            missing = make_missing_neighbor_inputs(
                self.neighbor_config, filtered,
                weight_dtype=self.weight_dtype or "float32")
            inputs.update(missing)  # As 1.4: the caller's dict gets them.
            filtered.update(missing)
        return super().__call__(filtered, *args, **kwargs)

    def call(self, inputs, keep_rank=True):
        return utils.unpack_neighbor_features(
            self._filter(inputs), self.neighbor_config, keep_rank=keep_rank)

    def get_config(self):
        config = super().get_config()
        config.update(neighbor_config=self.neighbor_config.get_config(),
                      feature_names=self.feature_names,
                      weight_dtype=self.weight_dtype)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["neighbor_config"] = configs.GraphNeighborConfig.from_config(
            config["neighbor_config"])
        return cls(**config)
