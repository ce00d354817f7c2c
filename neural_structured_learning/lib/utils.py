"""Norms, projections, neighbour-feature packing and other tensor utilities.

Everything is written in `keras.ops` and runs on every Keras backend. Axis 0 is
the batch axis. "Per example" means reduced over all other axes; for a
structure (dict, list) of tensors, per-example reductions also run *across* the
tensors, so the structure is treated as one concatenated vector per example.
"""

import numbers

import keras
import numpy as np
from keras import ops
from keras import tree

from neural_structured_learning.configs import configs


# ---------------------------------------------------------------------------
# Small private helpers.


def maybe_numpy(x):
    """Returns `x` as a NumPy array when its value is known, else None.

    Values are unknown inside a traced function (`tf.function`, `jax.jit`);
    checks that need values are then skipped.
    """
    if isinstance(x, (np.ndarray, np.generic, numbers.Number)):
        return np.asarray(x)
    try:
        return np.asarray(ops.convert_to_numpy(x))
    except Exception:  # pylint: disable=broad-except
        return None


def _non_batch_axes(x):
    return tuple(range(1, len(x.shape)))


def _per_example(reduce_fn, x):
    """Reduces `x` over its non-batch axes (a rank-1 `x` is returned)."""
    axes = _non_batch_axes(x)
    return reduce_fn(x, axis=axes) if axes else x


def _expand_to_rank(vector, rank):
    """Reshapes a per-example vector `[B]` to `[B, 1, ..., 1]`."""
    return ops.reshape(vector, (-1,) + (1,) * (rank - 1))


def _reduce_across(reduce_fn, tensors):
    """Per-example reduction within and then across a list of tensors."""
    per_tensor = [_per_example(reduce_fn, t) for t in tensors]
    if len(per_tensor) == 1:
        return per_tensor[0]
    return reduce_fn(ops.stack(per_tensor, axis=0), axis=0)


def _to_norm_type(norm_type):
    return configs._enum_converter(configs.NormType, "norm_type")(norm_type)


# ---------------------------------------------------------------------------
# Norms and projections.


def normalize(tensor, norm_type, epsilon=1e-6):
    """Normalizes each example of a single tensor to unit norm.

    * 'infinity': `x / max(max|x|, epsilon)`
    * 'l1': `x / max(sum|x|, epsilon)`
    * 'l2': `x / sqrt(max(sum x^2, epsilon^2))`

    The norm is taken per example, over all non-batch axes.

    Args:
        tensor: a float tensor of shape `[batch, ...]`.
        norm_type: a `NormType` or its string value.
        epsilon: lower bound of the norm, to avoid division by zero.

    Returns:
        A tensor of the same shape.

    Raises:
        ValueError: for an unknown `norm_type`.

    Example:
    >>> normalize([[1., 2., -4.], [-1., 5., -3.]], 'infinity')
    [[0.25, 0.5, -1.], [-0.2, 1., -0.6]]
    """
    norm_type = _to_norm_type(norm_type)
    x = ops.convert_to_tensor(tensor)
    if norm_type == configs.NormType.INFINITY:
        norm = ops.maximum(_per_example(ops.max, ops.abs(x)), epsilon)
    elif norm_type == configs.NormType.L1:
        norm = ops.maximum(_per_example(ops.sum, ops.abs(x)), epsilon)
    else:
        norm = ops.sqrt(ops.maximum(_per_example(ops.sum, ops.square(x)),
                                    epsilon**2))
    return x / _expand_to_rank(norm, len(x.shape))


def maximize_within_unit_norm(weights, norm_type, epsilon=1e-6):
    """Solves `argmax_x <w, x>` subject to `||x|| = 1`, per example.

    The norm is taken jointly over every tensor of `weights`:

    * 'infinity': `sign(w)` elementwise.
    * 'l2': `w / sqrt(max(sum_all w^2, epsilon^2))`.
    * 'l1': each element whose `|w|` equals the example's maximum gets
      `sign(w) / k` (`k` = number of such elements); all others get 0.

    Args:
        weights: a float tensor or a structure (dict, list) of float tensors,
            each of shape `[batch, ...]`.
        norm_type: a `NormType` or its string value.
        epsilon: lower bound of the norm.

    Returns:
        The maximizer, with the structure and shapes of `weights`.

    Example:
    >>> maximize_within_unit_norm([[3., -4.], [-7., 24.]], 'l2')
    [[0.6, -0.8], [-0.28, 0.96]]
    """
    norm_type = _to_norm_type(norm_type)
    flat = [ops.convert_to_tensor(w) for w in tree.flatten(weights)]
    if not flat:
        return weights
    if norm_type == configs.NormType.INFINITY:
        out = [ops.sign(w) for w in flat]
    elif norm_type == configs.NormType.L2:
        sq = _reduce_across(ops.sum, [ops.square(w) for w in flat])
        inv = 1.0 / ops.sqrt(ops.maximum(sq, epsilon**2))
        out = [w * ops.cast(_expand_to_rank(inv, len(w.shape)), w.dtype)
               for w in flat]
    else:
        abs_w = [ops.abs(w) for w in flat]
        max_abs = _reduce_across(ops.max, abs_w)
        is_max = [ops.cast(a >= _expand_to_rank(max_abs, len(a.shape)),
                           a.dtype) for a in abs_w]
        count = _reduce_across(ops.sum, is_max)
        out = [ops.sign(w) * m
               / _expand_to_rank(ops.maximum(count, epsilon), len(w.shape))
               for w, m in zip(flat, is_max)]
    return tree.pack_sequence_as(weights, out)


def _project_l1(flat, radius):
    """Euclidean projection onto the L1 ball (Duchi et al., 2008)."""
    batch = ops.shape(flat[0])[0]
    sizes = [int(np.prod(t.shape[1:])) for t in flat]
    v = ops.concatenate([ops.reshape(t, (batch, -1)) for t in flat], axis=1)
    a = ops.abs(v)
    total = ops.sum(a, axis=1, keepdims=True)
    u = ops.flip(ops.sort(a, axis=1), axis=1)  # descending.
    css = ops.cumsum(u, axis=1)
    j = ops.cast(ops.arange(1, v.shape[1] + 1), v.dtype)
    rho = ops.sum(ops.cast(u - (css - radius) / j > 0, "int32"), axis=1,
                  keepdims=True)
    rho = ops.maximum(rho, 1)
    theta = (ops.take_along_axis(css, rho - 1, axis=1) - radius) / ops.cast(
        rho, v.dtype)
    projected = ops.sign(v) * ops.maximum(a - theta, 0.0)
    v = ops.where(total <= radius, v, projected)
    ends = np.cumsum(sizes)
    return [ops.reshape(v[:, end - size:end], ops.shape(t))
            for size, end, t in zip(sizes, ends, flat)]


def project_to_ball(tensors, radius, norm_type, epsilon=1e-6):
    """Projects each example onto the norm ball of `radius` around 0.

    * 'infinity': elementwise `clip(x, -radius, radius)`.
    * 'l2': `x * min(1, radius / n)` with the joint per-example norm
      `n = sqrt(max(sum_all x^2, epsilon^2))`.
    * 'l1': the Euclidean projection onto the joint per-example L1 ball
      (Duchi et al., 2008). New in this version: 1.4 raised
      `NotImplementedError`. String norm names are accepted too (1.4 took
      only the enum).

    Args:
        tensors: a float tensor or a structure of float tensors `[batch, ...]`.
        radius: radius of the ball (> 0).
        norm_type: a `NormType` or its string value.
        epsilon: lower bound of the norm.

    Returns:
        The projection, with the structure and shapes of `tensors`.

    Example:
    >>> project_to_ball([[1., 2., -4.]], 1.5, 'infinity')
    [[1., 1.5, -1.5]]
    """
    norm_type = _to_norm_type(norm_type)
    flat = [ops.convert_to_tensor(t) for t in tree.flatten(tensors)]
    if not flat:
        return tensors
    if norm_type == configs.NormType.INFINITY:
        out = [ops.clip(t, -radius, radius) for t in flat]
    elif norm_type == configs.NormType.L2:
        sq = _reduce_across(ops.sum, [ops.square(t) for t in flat])
        norm = ops.sqrt(ops.maximum(sq, epsilon**2))
        scale = ops.minimum(1.0, radius / norm)
        out = [t * ops.cast(_expand_to_rank(scale, len(t.shape)), t.dtype)
               for t in flat]
    else:
        out = _project_l1(flat, radius)
    return tree.pack_sequence_as(tensors, out)


def random_in_norm_ball(tensor_structure, radius, norm_type, seed=None):
    """Samples uniformly from the norm ball of `radius`, per example.

    Only shapes and dtypes of `tensor_structure` are used. The ball is the
    joint one over every tensor of the structure.

    * 'infinity': `uniform(-radius, radius)` per element.
    * 'l2': `g ~ N(0, 1)` per element, scaled by
      `radius / sqrt(sum_all g^2 + E)` with `E ~ Exponential(mean 2)` (two
      extra Gaussian coordinates; Barthe et al., 2005).
    * 'l1': `g ~ Laplace(0, 1)` per element, scaled by
      `radius / (sum_all |g| + E)` with `E ~ Exponential(1)`.

    Args:
        tensor_structure: a float tensor or structure of float tensors.
        radius: radius of the ball.
        norm_type: a `NormType` or its string value.
        seed: an int or a `keras.random.SeedGenerator` (required inside a
            traced JAX function).

    Returns:
        Random tensors with the structure, shapes and dtypes of the input.

    Raises:
        ValueError: if a tensor is not floating-point, or if the tensors'
            batch sizes differ.
    """
    norm_type = _to_norm_type(norm_type)
    flat = [ops.convert_to_tensor(t) for t in tree.flatten(tensor_structure)]
    for t in flat:
        if not is_float(t):
            raise ValueError(
                "random_in_norm_ball needs floating-point tensors. Received "
                f"dtype {keras.backend.standardize_dtype(t.dtype)}.")
    batch_sizes = {t.shape[0] for t in flat} - {None}
    if len(batch_sizes) > 1:
        raise ValueError(
            "All tensors must have the same batch size. Received batch sizes "
            f"{sorted(batch_sizes)}.")
    if not flat:
        return tensor_structure
    batch = ops.shape(flat[0])[0]
    shapes = [ops.shape(t) for t in flat]
    dtypes = [keras.backend.standardize_dtype(t.dtype) for t in flat]
    seeds = [_nth_seed(seed, i) for i in range(len(flat) + 1)]
    if norm_type == configs.NormType.INFINITY:
        out = [keras.random.uniform(s, -radius, radius, dtype=d, seed=r)
               for s, d, r in zip(shapes, dtypes, seeds)]
        return tree.pack_sequence_as(tensor_structure, out)
    extra = keras.random.gamma((batch,), 1.0, seed=seeds[-1])
    if norm_type == configs.NormType.L2:
        samples = [keras.random.normal(s, dtype=d, seed=r)
                   for s, d, r in zip(shapes, dtypes, seeds)]
        norm = ops.sqrt(_reduce_across(
            ops.sum, [ops.square(ops.cast(g, "float32")) for g in samples])
            + 2.0 * extra)
    else:
        # Laplace(0, 1) = sign(u) * Exponential(1) = sign(u) * -log(1 - |u|).
        uniforms = [keras.random.uniform(s, -1.0, 1.0, dtype=d, seed=r)
                    for s, d, r in zip(shapes, dtypes, seeds)]
        samples = [-ops.sign(u) * ops.log1p(-ops.abs(u)) for u in uniforms]
        norm = _reduce_across(
            ops.sum, [ops.abs(ops.cast(g, "float32")) for g in samples]) + extra
    scale = radius / norm
    out = [g * ops.cast(_expand_to_rank(scale, len(g.shape)), g.dtype)
           for g in samples]
    return tree.pack_sequence_as(tensor_structure, out)


def _nth_seed(seed, index):
    """Distinct seeds for successive draws (a SeedGenerator advances)."""
    if isinstance(seed, numbers.Integral):
        return int(seed) + 7919 * index
    return seed


def is_float(x):
    return keras.backend.is_float_dtype(
        keras.backend.standardize_dtype(x.dtype))


# ---------------------------------------------------------------------------
# Targets, replication, decay, masks.


def get_target_indices(logits, labels, adv_target_config):
    """Returns the class each example's targeted attack aims at.

    * SECOND: the class with the second-highest logit.
    * LEAST: the class with the lowest logit.
    * RANDOM: a uniformly random class (seeded by `random_seed`; values are
      not those of NSL 1.4, which used TensorFlow's RNG).
    * GROUND_TRUTH: `labels`.

    Args:
        logits: a tensor `[batch, num_classes]`.
        labels: integer labels `[batch]`.
        adv_target_config: an `AdvTargetConfig`.

    Returns:
        An int32 tensor `[batch]`.
    """
    method = adv_target_config.target_method
    logits = ops.convert_to_tensor(logits)
    if method == configs.AdvTargetType.SECOND:
        return ops.cast(ops.top_k(logits, 2)[1][:, 1], "int32")
    if method == configs.AdvTargetType.LEAST:
        return ops.cast(ops.argmin(logits, axis=-1), "int32")
    if method == configs.AdvTargetType.RANDOM:
        return keras.random.randint(
            (ops.shape(logits)[0],), 0, logits.shape[-1], dtype="int32",
            seed=int(adv_target_config.random_seed))
    if method == configs.AdvTargetType.GROUND_TRUTH:
        return ops.convert_to_tensor(labels)
    raise ValueError(f"Unknown target method: {method!r}")


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
    >>> replicate_embeddings([[0, 1], [2, 3], [4, 5]], [2, 0, 1])
    [[0, 1], [0, 1], [4, 5]]
    """
    times = maybe_numpy(replicate_times)
    if times is not None and np.any(times < 0):
        raise ValueError(
            "`replicate_times` must be >= 0. Received: "
            f"replicate_times={times.tolist()}")
    embeddings = ops.convert_to_tensor(embeddings)
    if times is not None and times.ndim == 0:
        return ops.repeat(embeddings, int(times), axis=0)
    return ops.repeat(embeddings, ops.convert_to_tensor(replicate_times),
                      axis=0)


def decay_over_time(global_step, decay_config, init_value=1.0):
    """Returns `max(decay(init_value, global_step), min_value)`.

    With `s = global_step`, `T = decay_steps`, `r = decay_rate`:

    * exponential: `init_value * r^(s / T)`
    * inverse time: `init_value / (1 + r * s / T)`
    * natural exp: `init_value * exp(-r * s / T)`

    Works eagerly as well as traced (1.4 failed outside `tf.function`).

    Args:
        global_step: the current step (a number or scalar tensor).
        decay_config: a `DecayConfig`.
        init_value: the value at step 0.

    Returns:
        A float32 scalar tensor.
    """
    step = ops.cast(global_step, "float32")
    ratio = step / float(decay_config.decay_steps)
    rate = float(decay_config.decay_rate)
    init = ops.cast(init_value, "float32")
    decay_type = decay_config.decay_type
    if decay_type == configs.DecayType.EXPONENTIAL_DECAY:
        value = init * ops.power(rate, ratio)
    elif decay_type == configs.DecayType.INVERSE_TIME_DECAY:
        value = init / (1.0 + rate * ratio)
    elif decay_type == configs.DecayType.NATURAL_EXP_DECAY:
        value = init * ops.exp(-rate * ratio)
    else:
        raise ValueError(f"Invalid configs.DecayType {decay_type!r}")
    return ops.maximum(value, float(decay_config.min_value))


def apply_feature_mask(features, feature_mask=None):
    """Returns `features * feature_mask` (the mask broadcasts).

    Args:
        features: a tensor.
        feature_mask: `None` (no mask), or values in [0, 1].

    Raises:
        ValueError: if a (concrete) mask value is outside [0, 1].
    """
    if feature_mask is None:
        return features
    mask = maybe_numpy(feature_mask)
    if mask is not None and (np.any(mask < 0) or np.any(mask > 1)):
        raise ValueError(
            "`feature_mask` values must be in [0, 1]. Received values in "
            f"[{mask.min()}, {mask.max()}].")
    features = ops.convert_to_tensor(features)
    return features * ops.cast(feature_mask, features.dtype)


# ---------------------------------------------------------------------------
# Neighbour features.


class NeighborFeatureError(KeyError, ValueError):
    """A neighbour feature or weight is missing or malformed."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def neighbor_feature_name(config, index, name):
    return f"{config.prefix}{index}_{name}"


def neighbor_weight_name(config, index):
    return f"{config.prefix}{index}{config.weight_suffix}"


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
