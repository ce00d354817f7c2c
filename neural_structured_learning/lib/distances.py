"""Distances between samples and neighbours, with TF1-style weighted reductions.

The reductions reproduce `tf.compat.v1.losses.compute_weighted_loss` exactly
(see `compute_weighted_loss`), without TensorFlow.
"""

import numpy as np
from keras import ops
from keras.backend import standardize_dtype

from neural_structured_learning.configs import configs
from neural_structured_learning.lib import _tensors

Reduction = configs.Reduction

_EPSILON = 1e-7  # Inside the logarithms of KL and JS divergences (as 1.4).


def _at_least_float32(x):
    """`x` as a tensor, float16/bfloat16 cast up to float32.

    Mixed-precision models output float16/bfloat16: distances between
    nearby outputs (a softmax, a log-ratio, a small difference) would be
    mostly rounding error in those dtypes, so they are computed in float32.
    """
    x = ops.convert_to_tensor(x)
    dtype = _tensors.working_dtype(x.dtype)
    return x if dtype == standardize_dtype(x.dtype) else ops.cast(x, dtype)


def _safe_div(numerator, denominator):
    safe = ops.where(denominator > 0, denominator, ops.ones_like(denominator))
    return ops.where(denominator > 0, numerator / safe,
                     ops.zeros_like(numerator))


def compute_weighted_loss(losses, weights=1.0, reduction=(
        Reduction.SUM_BY_NONZERO_WEIGHTS)):
    """Weights and reduces a tensor of losses.

    With `L = losses` and `W = weights` broadcast to `L`'s shape:

    * `NONE`: `L * W`
    * `SUM`: `sum(L * W)`
    * `MEAN`: `sum(L * W) / sum(W)` (0 if `sum(W) == 0`)
    * `SUM_OVER_BATCH_SIZE`: `sum(L * W) / size(L)`
    * `SUM_BY_NONZERO_WEIGHTS`: `sum(L * W) / count_nonzero(W)` (0 if none)

    Args:
        losses: a float tensor.
        weights: a scalar or a tensor broadcastable to `losses`.
        reduction: a `Reduction` value.

    Returns:
        A scalar, or a tensor shaped like `losses` for `NONE`.
    """
    reduction = Reduction.validate(reduction)
    losses = ops.convert_to_tensor(losses)
    weights = ops.cast(weights, losses.dtype)
    weighted = losses * weights
    if reduction == Reduction.NONE:
        return weighted
    total = ops.sum(weighted)
    if reduction == Reduction.SUM:
        return total
    broadcast_weights = ops.broadcast_to(weights, ops.shape(weighted))
    if reduction == Reduction.MEAN:
        return _safe_div(total, ops.sum(broadcast_weights))
    if reduction == Reduction.SUM_OVER_BATCH_SIZE:
        return total / ops.cast(ops.size(weighted), weighted.dtype)
    nonzero = ops.sum(ops.cast(ops.not_equal(broadcast_weights, 0),
                               weighted.dtype))
    return _safe_div(total, nonzero)


def _check_axis(ndims, axis):
    # As 1.4: a falsy axis (None or 0) is not checked.
    if axis and not -ndims <= axis < ndims:
        raise ValueError(
            f"`axis` = {axis} not in [{-ndims}, {ndims}) for inputs of rank "
            f"{ndims}.")


def _check_distributions(axis, *distributions):
    for d in distributions:
        value = _tensors.maybe_numpy(d)
        if value is None:
            continue
        if np.any(value < 0) or not np.allclose(value.sum(axis=axis), 1.0,
                                                atol=1e-5):
            raise ValueError(
                "x and/or y is not a proper probability distribution: "
                f"values must be >= 0 and sum to 1 along axis {axis}.")


def _prepare_divergence(labels, predictions, axis):
    if axis is None:
        raise ValueError('You must specify "axis".')
    labels = ops.cast(labels, "float32")
    predictions = ops.cast(predictions, "float32")
    if tuple(labels.shape) != tuple(predictions.shape):
        raise ValueError(
            f"Shapes {tuple(labels.shape)} and {tuple(predictions.shape)} "
            "are incompatible: `labels` and `predictions` must match.")
    _check_axis(len(predictions.shape), axis)
    _check_distributions(axis, labels, predictions)
    return labels, predictions


def _kl_elements(p, q):
    return p * ops.log(p + _EPSILON) - p * ops.log(q + _EPSILON)


def kl_divergence(labels, predictions, axis=None, weights=1.0, scope=None,
                  loss_collection=None,
                  reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """Kullback-Leibler divergence `KL(P || Q)` along `axis`, then reduced.

    `KL = sum_axis P * log(P + 1e-7) - P * log(Q + 1e-7)`, kept as a size-1
    axis and passed to `compute_weighted_loss(KL, weights, reduction)`.

    Args:
        labels: P, probabilities (cast to float32).
        predictions: Q, probabilities of the same shape.
        axis: the distribution axis (required).
        weights: scalar or tensor broadcastable to the result.
        scope: unused (TF1 compatibility).
        loss_collection: unused (TF1 compatibility).
        reduction: a `Reduction` value.

    Raises:
        ValueError: if `axis` is None or out of range, or (when values are
            concrete) if an input is not a probability distribution.

    Example:
    >>> labels = np.array([[1., 0, 0], [.1, .2, .7]], 'float32')
    >>> predictions = np.array([[1., 0, 0], [.1, .9, 0]], 'float32')
    >>> loss = nsl.lib.kl_divergence(labels, predictions, axis=-1)
    >>> round(float(loss), 4)
    5.3661
    """
    del scope, loss_collection
    p, q = _prepare_divergence(labels, predictions, axis)
    divergence = ops.sum(_kl_elements(p, q), axis=axis, keepdims=True)
    return compute_weighted_loss(divergence, weights, reduction)


def jensen_shannon_divergence(labels, predictions, axis=None, weights=1.0,
                              scope=None, loss_collection=None,
                              reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """Jensen-Shannon divergence along `axis`, then reduced.

    With `M = (P + Q) / 2`: `JSD = 0.5 * KL(P || M) + 0.5 * KL(Q || M)`,
    using the same elementwise terms and epsilon as `kl_divergence`.

    Args and Raises: as `kl_divergence`.
    """
    del scope, loss_collection
    p, q = _prepare_divergence(labels, predictions, axis)
    m = (p + q) / 2.0
    divergence = ops.sum(0.5 * _kl_elements(p, m) + 0.5 * _kl_elements(q, m),
                         axis=axis, keepdims=True)
    return compute_weighted_loss(divergence, weights, reduction)


_AVERAGING = (Reduction.MEAN, Reduction.SUM_BY_NONZERO_WEIGHTS,
              Reduction.SUM_OVER_BATCH_SIZE)


def _l2_normalize(x, axis):
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=axis,
                                            keepdims=True), 1e-12))


def pairwise_distance_wrapper(sources, targets, weights=1.0,
                              distance_config=None):
    """Distance between `sources` and `targets`, weighted and reduced.

    Per `distance_config.distance_type`, elementwise or along
    `sum_over_axis` (`s` = source, `t` = target):

    * 'l1': `|t - s|`; 'l2': `(t - s)^2` (squared, not a norm).
    * 'cosine': `1 - sum_axis(s' * t')` of the L2-normalised rows (requires
      `sum_over_axis`).
    * 'kl_divergence', 'jensen_shannon_divergence': as the functions above,
      along `sum_over_axis`.

    With `transform_fn='softmax'`, both sides go through a softmax first
    (along `sum_over_axis`, default last axis); float16/bfloat16 inputs are
    cast to float32 before it. The result is reduced with
    `compute_weighted_loss(..., weights, reduction)`. For L1/L2 with an
    averaging reduction (MEAN, SUM_BY_NONZERO_WEIGHTS, SUM_OVER_BATCH_SIZE)
    and a `sum_over_axis`, the result is multiplied by the size of that axis,
    which turns the mean over elements into the mean of per-row sums. (As in
    1.4, NONE and SUM reductions do not sum L1/L2 over the axis.)

    Args:
        sources: a float tensor `[batch, ...]`.
        targets: a float tensor of the same shape.
        weights: scalar or tensor broadcastable to the per-element (or
            per-row) distances; its size along `sum_over_axis` must be 1.
        distance_config: a `DistanceConfig` (default: L2,
            SUM_BY_NONZERO_WEIGHTS).

    Returns:
        A scalar, or a tensor for `Reduction.NONE`.

    Raises:
        ValueError: bad axis, cosine without axis, weights of size > 1 along
            the axis, shape mismatch.

    Example:
    >>> sources = np.array([[1., 1], [2, 2]], 'float32')
    >>> targets = np.array([[1., 1], [0, 2]], 'float32')
    >>> loss = nsl.lib.pairwise_distance_wrapper(
    ...     sources, targets,
    ...     distance_config=nsl.configs.DistanceConfig('l2', sum_over_axis=-1))
    >>> float(loss)  # Mean over rows of the squared distances (0, 4).
    2.0
    """
    config = distance_config or configs.DistanceConfig()
    reduction = Reduction.validate(config.reduction)
    axis = config.sum_over_axis
    sources = _at_least_float32(sources)
    targets = _at_least_float32(targets)
    if tuple(sources.shape[1:]) != tuple(targets.shape[1:]):
        raise ValueError(
            f"Shapes {tuple(sources.shape)} and {tuple(targets.shape)} are "
            "incompatible: `sources` and `targets` must have the same shape.")
    if config.transform_fn == configs.TransformType.SOFTMAX:
        softmax_axis = -1 if axis is None else axis
        sources = ops.softmax(sources, axis=softmax_axis)
        targets = ops.softmax(targets, axis=softmax_axis)
    elif config.transform_fn != configs.TransformType.NONE:
        raise ValueError(f"Unknown transform_fn {config.transform_fn!r}")
    _check_axis(len(sources.shape), axis)

    distance_type = config.distance_type
    if distance_type in (configs.DistanceType.L1, configs.DistanceType.L2):
        diff = ops.cast(targets, "float32") - ops.cast(sources, "float32")
        elements = (ops.abs(diff) if distance_type == configs.DistanceType.L1
                    else ops.square(diff))
        result = compute_weighted_loss(elements, weights, reduction)
        if axis is not None and reduction in _AVERAGING:
            weights_shape = np.shape(weights) if not hasattr(
                weights, "shape") else tuple(weights.shape)
            if (len(weights_shape) > 0
                    and weights_shape[axis] not in (1, None)):
                raise ValueError(
                    f"Shape of weights along the axis {axis} must be 1. "
                    f"Received weights of shape {weights_shape}.")
            result = result * float(sources.shape[axis])
        return result
    if distance_type == configs.DistanceType.COSINE:
        if axis is None:
            raise ValueError("You must specify argument axis.")
        s = _l2_normalize(ops.cast(sources, "float32"), axis)
        t = _l2_normalize(ops.cast(targets, "float32"), axis)
        distance = 1.0 - ops.sum(s * t, axis=axis, keepdims=True)
        return compute_weighted_loss(distance, weights, reduction)
    if distance_type == configs.DistanceType.KL_DIVERGENCE:
        return kl_divergence(sources, targets, axis=axis, weights=weights,
                             reduction=reduction)
    if distance_type == configs.DistanceType.JENSEN_SHANNON_DIVERGENCE:
        return jensen_shannon_divergence(sources, targets, axis=axis,
                                         weights=weights, reduction=reduction)
    raise ValueError(f"Unknown distance_type {distance_type!r}")


def _two_class(values, from_logits):
    """`[..., 1]` binary outputs as two-class logits or probabilities."""
    if values.shape[-1] != 1:
        return values
    if from_logits:
        return ops.concatenate([ops.zeros_like(values), values], axis=-1)
    return ops.concatenate([1.0 - values, values], axis=-1)


def _log_softmax(logits):
    """`log_softmax` that stays precise when the softmax saturates.

    With `m = max_k z_k` and `s = sum_{k != argmax} exp(z_k - m)`,
    `log p_k = z_k - m - log1p(s)`: the sum leaves out the maximum's exact
    1, which in float32 would swallow a small `s`.
    """
    top = ops.max(logits, axis=-1, keepdims=True)
    shifted = logits - top
    is_top = ops.one_hot(ops.argmax(logits, axis=-1), logits.shape[-1],
                         dtype=logits.dtype)
    rest = ops.sum(ops.exp(shifted) * (1.0 - is_top), axis=-1, keepdims=True)
    return shifted - ops.log1p(rest)


def kl_divergence_from_outputs(clean, perturbed, from_logits=True):
    """Per-example `KL(p || q)` between two models' class outputs.

    With logits (`from_logits=True`), `p = softmax(clean)` and the
    divergence is `sum_k p_k (log p_k - log q_k)` with log-probabilities
    computed from the logits without forming `1 + small` (precise in
    float32 when probabilities saturate). With probabilities,
    `sum_k p_k (log(p_k + 1e-7) - log(q_k + 1e-7))`. A last axis of size 1 is
    read as a binary (sigmoid) output. float16/bfloat16 outputs (mixed
    precision) are cast to float32 first.

    Args:
        clean: logits or probabilities `[batch, ..., classes]` (p).
        perturbed: the same for the perturbed input (q).
        from_logits: whether the outputs are logits.

    Returns:
        A float tensor `[batch, ...]`.
    """
    clean = _two_class(_at_least_float32(clean), from_logits)
    perturbed = _two_class(_at_least_float32(perturbed), from_logits)
    if from_logits:
        log_p = _log_softmax(clean)
        log_q = _log_softmax(perturbed)
        return ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)
    return ops.sum(_kl_elements(clean, perturbed), axis=-1)


def entropy_from_outputs(outputs, from_logits=True):
    """Per-example entropy `-sum_k p_k log p_k` of class outputs.

    Args:
        outputs: logits or probabilities `[batch, ..., classes]` (a last axis
            of size 1 is a binary output).
        from_logits: whether `outputs` are logits.

    Returns:
        A float tensor `[batch, ...]` (float32 for float16/bfloat16 outputs).
    """
    outputs = _two_class(_at_least_float32(outputs), from_logits)
    if from_logits:
        log_p = _log_softmax(outputs)
    else:
        log_p = ops.log(outputs + _EPSILON)
    return -ops.sum(ops.exp(log_p) * log_p, axis=-1)
