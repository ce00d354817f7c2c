"""Packed neighbour features: splitting them off, and replicating samples.

The names (`{prefix}{i}_{name}`, `{prefix}{i}{weight_suffix}`) are defined in
`neural_structured_learning._core.naming`.
"""

import numpy as np
from keras import ops

from neural_structured_learning._core.naming import neighbor_feature_name
from neural_structured_learning._core.naming import neighbor_weight_name
from neural_structured_learning.lib import _tensors


def replicate_embeddings(embeddings, replicate_times):
    """Repeats each row `i` of `embeddings` `replicate_times[i]` times.

    This is `np.repeat(embeddings, replicate_times, axis=0)`.

    Args:
        embeddings: a tensor `[batch, ...]`.
        replicate_times: a non-negative int, or an int vector `[batch]`. A
            vector must be concrete (not traced) under JAX.

    Returns:
        A tensor `[sum(replicate_times), ...]` (or `[batch * k, ...]`).

    Raises:
        ValueError: if a replication count is negative.

    Example:
    >>> embeddings = np.array([[0, 1], [2, 3], [4, 5]])
    >>> print(keras.ops.convert_to_numpy(
    ...     nsl.lib.replicate_embeddings(embeddings, [2, 0, 1])))
    [[0 1]
     [0 1]
     [4 5]]
    """
    times = _tensors.maybe_numpy(replicate_times)
    if times is not None and np.any(times < 0):
        raise ValueError(
            "`replicate_times` must be >= 0. Received: "
            f"replicate_times={times.tolist()}")
    embeddings = ops.convert_to_tensor(embeddings)
    if times is not None and times.ndim == 0:
        return ops.repeat(embeddings, int(times), axis=0)
    return ops.repeat(embeddings, ops.convert_to_tensor(replicate_times),
                      axis=0)


class NeighborFeatureError(KeyError, ValueError):
    """A neighbour feature or weight is missing or malformed."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def strip_neighbor_features(features, neighbor_config):
    """Returns `features` without the keys that start with the prefix."""
    return {k: v for k, v in features.items()
            if not k.startswith(neighbor_config.prefix)}


def unpack_neighbor_features(features, neighbor_config, keep_rank=True):
    """Splits packed features into sample, neighbour and weight tensors.

    The input holds, for every sample feature `name` and every
    `i < max_neighbors`, `{prefix}{i}_{name}` (same shape as `name`) and
    `{prefix}{i}{weight_suffix}` (shape `[batch, 1]` or `[batch]`). Missing
    neighbours are expected to be padded with weight 0.

    Args:
        features: a dict of tensors `[batch, ...]`.
        neighbor_config: a `GraphNeighborConfig`.
        keep_rank: if True, neighbours are merged sample-major into
            `[batch * max_neighbors, ...]` (s0n0, s0n1, ..., s1n0, ...);
            otherwise they are stacked to `[batch, max_neighbors, ...]`.

    Returns:
        `(sample_features, neighbor_features, neighbor_weights)`: the dict of
        sample features, a dict of merged neighbour features keyed by the
        sample feature name, and the weights `[batch * max_neighbors, 1]` (or
        `[batch, max_neighbors, 1]`). With `max_neighbors == 0` the neighbour
        dict is empty and the weights are None.

    Raises:
        NeighborFeatureError (a KeyError and ValueError): if a neighbour
            feature or weight is missing, or has a shape that does not match.
    """
    sample = strip_neighbor_features(features, neighbor_config)
    num = neighbor_config.max_neighbors
    if num == 0:
        return sample, {}, None

    def stack(values):
        stacked = ops.stack(values, axis=1)
        if keep_rank:
            return ops.reshape(stacked, (-1,) + tuple(stacked.shape[2:]))
        return stacked

    neighbors = {}
    for name, value in sample.items():
        value = ops.convert_to_tensor(value)
        copies = []
        for i in range(num):
            key = neighbor_feature_name(neighbor_config, i, name)
            if key not in features:
                present = sorted(k for k in features
                                 if k.startswith(neighbor_config.prefix))
                raise NeighborFeatureError(
                    f"Neighbour feature {key!r} is missing: max_neighbors="
                    f"{num} needs {neighbor_config.prefix}0_{name} .. "
                    f"{neighbor_config.prefix}{num - 1}_{name} for sample "
                    f"feature {name!r}. Neighbour keys present: {present}. "
                    "Lower max_neighbors, or pad missing neighbours with "
                    "weight 0.")
            copy = ops.convert_to_tensor(features[key])
            if tuple(copy.shape[1:]) != tuple(value.shape[1:]):
                raise NeighborFeatureError(
                    f"Neighbour feature {key!r} has shape {tuple(copy.shape)}"
                    f" but sample feature {name!r} has shape "
                    f"{tuple(value.shape)}: they must match after the batch "
                    "axis.")
            copies.append(ops.cast(copy, value.dtype))
        neighbors[name] = stack(copies)

    weights = []
    for i in range(num):
        key = neighbor_weight_name(neighbor_config, i)
        if key not in features:
            raise NeighborFeatureError(
                f"Neighbour weight {key!r} is missing (max_neighbors={num}).")
        w = ops.convert_to_tensor(features[key])
        if len(w.shape) == 1:
            w = ops.expand_dims(w, -1)
        if len(w.shape) != 2 or w.shape[1] not in (1, None):
            raise NeighborFeatureError(
                f"Neighbour weight {key!r} must be one scalar per example, "
                f"shape [batch, 1] or [batch]. Received shape "
                f"{tuple(features[key].shape)}.")
        weights.append(w)
    return sample, neighbors, stack(weights)
