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
import numpy as np
from keras import ops

from neural_structured_learning._core import naming
from neural_structured_learning.configs import configs
from neural_structured_learning.lib import _tensors
from neural_structured_learning.lib import gradients
from neural_structured_learning.lib import neighbors as lib_neighbors

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
    >>> sorted(nsl.keras.layers.make_missing_neighbor_inputs(config, inputs))
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
            key = naming.neighbor_feature_name(neighbor_config, i, name)
            if key in inputs:
                continue
            tensor = inputs[name]
            new_inputs[key] = keras.Input(
                shape=tuple(tensor.shape[1:]), batch_size=tensor.shape[0],
                dtype=tensor.dtype, sparse=getattr(tensor, "sparse", False),
                ragged=getattr(tensor, "ragged", False), name=key)
        key = naming.neighbor_weight_name(neighbor_config, i)
        if key not in inputs:
            new_inputs[key] = keras.Input(shape=(1,), dtype=weight_dtype,
                                          name=key)
    return new_inputs


def _is_symbolic(value):
    return isinstance(value, keras.KerasTensor)


def _weights_message(neighbor_config):
    return (f"Neighbour weights ({neighbor_config.prefix}<i>"
            f"{neighbor_config.weight_suffix}) must be finite and >= 0")


def check_neighbor_weights(weights, neighbor_config):
    """Checks that neighbour weights are finite and >= 0; returns them.

    NaN weights would turn the graph loss, and then every model weight, into
    NaN; negative weights would push neighbours apart. When the values are
    known (eager execution) a `ValueError` names the weight keys, the number
    of bad weights and an example. Inside a compiled step (`tf.function`,
    `jax.jit`) a runtime check (`nsl.lib.gradients.assert_finite`) raises
    when the step runs: `InvalidArgumentError` on TensorFlow, an error
    wrapping `FloatingPointError` on JAX. TensorFlow with XLA
    (`jit_compile=True`) drops runtime checks, so the check is skipped there.

    Args:
        weights: the neighbour weights (any shape), or None.
        neighbor_config: the `GraphNeighborConfig` (for the message).

    Returns:
        `weights` (with the runtime check attached when compiled).

    Raises:
        ValueError: weights with NaN, Inf or negative entries (eager).
    """
    if weights is None or _is_symbolic(weights):
        return weights
    values = _tensors.maybe_numpy(weights)
    if values is not None:
        if values.dtype.kind not in "fiub":
            return weights
        with np.errstate(invalid="ignore"):
            bad = ~(np.isfinite(values) & (values >= 0))
        if bad.any():
            raise ValueError(
                f"{_weights_message(neighbor_config)}. Received "
                f"{int(bad.sum())} bad weight(s) (NaN, Inf or negative), "
                f"e.g. {float(values[bad][0])}.")
        return weights
    # Traced: values are unknown until the step runs. `w * 0` is NaN for
    # NaN and Inf, and `w >= 0` is False for NaN and negatives, so `flag`
    # is all zeros exactly when every weight is finite and >= 0.
    if not gradients.checks_values_at_run_time([weights]):
        # TensorFlow under XLA drops run-time checks; a shape-only pass on
        # placeholder tensors (PyTorch's meta tensors, used by Keras to
        # infer output shapes) has no values. The real step checks them.
        return weights
    w = ops.cast(weights, "float32")
    flag = ops.where(w >= 0, w * 0, w * 0 + np.nan)
    (flag,) = gradients.assert_finite(
        [flag], f"{_weights_message(neighbor_config)}: received NaN, "
        "Inf or negative neighbour weight(s).")
    # Ties the check to the result so a graph cannot prune it (adds 0).
    return weights + ops.cast(flag, ops.dtype(weights))


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
        ValueError: NaN, Inf or negative neighbour weights (eager; a
            compiled step raises when it runs, except TensorFlow with XLA,
            see `check_neighbor_weights`).

    Example:
    >>> inputs = {'words': keras.Input((1433,), name='words')}
    >>> layer = nsl.keras.layers.NeighborFeatures(
    ...     nsl.configs.GraphNeighborConfig(max_neighbors=2))
    >>> sample, neighbors, weights = layer(inputs)
    >>> print(*sorted(inputs))  # The neighbour inputs were added.
    NL_nbr_0_weight NL_nbr_0_words NL_nbr_1_weight NL_nbr_1_words words
    >>> neighbors['words'].shape, weights.shape  # [B * N, ...], [B * N, 1]
    ((None, 1433), (None, 1))

    Eagerly, on a packed batch of 2 samples:

    >>> batch = {'words': np.ones((2, 3), 'float32'),
    ...          'NL_nbr_0_words': np.zeros((2, 3), 'float32'),
    ...          'NL_nbr_0_weight': np.ones((2, 1), 'float32'),
    ...          'NL_nbr_1_words': np.zeros((2, 3), 'float32'),
    ...          'NL_nbr_1_weight': np.ones((2, 1), 'float32')}
    >>> sample, neighbors, weights = layer(batch)
    >>> tuple(neighbors['words'].shape), tuple(weights.shape)
    ((4, 3), (4, 1))
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
        sample, neighbors, weights = lib_neighbors.unpack_neighbor_features(
            self._filter(inputs), self.neighbor_config, keep_rank=keep_rank)
        return sample, neighbors, check_neighbor_weights(
            weights, self.neighbor_config)

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
