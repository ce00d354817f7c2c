"""Norms and projections, per example, in `keras.ops`.

The norm of a structure (dict, list) of tensors is the joint one: the
structure is treated as one concatenated vector per example.
"""

import numpy as np
from keras import ops
from keras import tree

from neural_structured_learning.configs import configs
from neural_structured_learning.lib import _tensors


def to_norm_type(norm_type):
    return configs._enum_converter(configs.NormType, "norm_type")(norm_type)


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
    >>> x = np.array([[1., 2., -4.], [-1., 5., -3.]], 'float32')
    >>> print(keras.ops.convert_to_numpy(nsl.lib.normalize(x, 'infinity')))
    [[ 0.25  0.5  -1.  ]
     [-0.2   1.   -0.6 ]]
    """
    norm_type = to_norm_type(norm_type)
    x = ops.convert_to_tensor(tensor)
    if norm_type == configs.NormType.INFINITY:
        norm = ops.maximum(_tensors.per_example(ops.max, ops.abs(x)), epsilon)
    elif norm_type == configs.NormType.L1:
        norm = ops.maximum(_tensors.per_example(ops.sum, ops.abs(x)), epsilon)
    else:
        norm = ops.sqrt(ops.maximum(
            _tensors.per_example(ops.sum, ops.square(x)), epsilon**2))
    return x / _tensors.expand_to_rank(norm, len(x.shape))


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
    >>> # An array: a list of lists would be a structure of scalars.
    >>> w = np.array([[3., -4.], [-7., 24.]], 'float32')
    >>> x = nsl.lib.maximize_within_unit_norm(w, 'l2')
    >>> print(keras.ops.convert_to_numpy(x))
    [[ 0.6  -0.8 ]
     [-0.28  0.96]]
    """
    norm_type = to_norm_type(norm_type)
    flat = [ops.convert_to_tensor(w) for w in tree.flatten(weights)]
    if not flat:
        return weights
    if norm_type == configs.NormType.INFINITY:
        out = [ops.sign(w) for w in flat]
    elif norm_type == configs.NormType.L2:
        sq = _tensors.reduce_across(ops.sum, [ops.square(w) for w in flat])
        inv = 1.0 / ops.sqrt(ops.maximum(sq, epsilon**2))
        out = [w * ops.cast(_tensors.expand_to_rank(inv, len(w.shape)), w.dtype)
               for w in flat]
    else:
        abs_w = [ops.abs(w) for w in flat]
        max_abs = _tensors.reduce_across(ops.max, abs_w)
        is_max = [ops.cast(a >= _tensors.expand_to_rank(max_abs, len(a.shape)),
                           a.dtype) for a in abs_w]
        count = _tensors.reduce_across(ops.sum, is_max)
        out = [ops.sign(w) * m
               / _tensors.expand_to_rank(ops.maximum(count, epsilon),
                                         len(w.shape))
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
    >>> x = np.array([[1., 2., -4.]], 'float32')
    >>> print(keras.ops.convert_to_numpy(
    ...     nsl.lib.project_to_ball(x, 1.5, 'infinity')))
    [[ 1.   1.5 -1.5]]
    """
    norm_type = to_norm_type(norm_type)
    flat = [ops.convert_to_tensor(t) for t in tree.flatten(tensors)]
    if not flat:
        return tensors
    if norm_type == configs.NormType.INFINITY:
        out = [ops.clip(t, -radius, radius) for t in flat]
    elif norm_type == configs.NormType.L2:
        sq = _tensors.reduce_across(ops.sum, [ops.square(t) for t in flat])
        norm = ops.sqrt(ops.maximum(sq, epsilon**2))
        scale = ops.minimum(1.0, radius / norm)
        out = [t * ops.cast(_tensors.expand_to_rank(scale, len(t.shape)),
                            t.dtype)
               for t in flat]
    else:
        out = _project_l1(flat, radius)
    return tree.pack_sequence_as(tensors, out)
