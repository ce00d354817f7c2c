"""Uniform samples from a norm ball, per example, in `keras.ops`."""

import numbers

import keras
from keras import ops
from keras import tree

from neural_structured_learning.configs import configs
from neural_structured_learning.lib import _tensors
from neural_structured_learning.lib import norms


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
    norm_type = norms.to_norm_type(norm_type)
    flat = [ops.convert_to_tensor(t) for t in tree.flatten(tensor_structure)]
    for t in flat:
        if not _tensors.is_float(t):
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
        norm = ops.sqrt(_tensors.reduce_across(
            ops.sum, [ops.square(ops.cast(g, "float32")) for g in samples])
            + 2.0 * extra)
    else:
        # Laplace(0, 1) = sign(u) * Exponential(1) = sign(u) * -log(1 - |u|).
        uniforms = [keras.random.uniform(s, -1.0, 1.0, dtype=d, seed=r)
                    for s, d, r in zip(shapes, dtypes, seeds)]
        samples = [-ops.sign(u) * ops.log1p(-ops.abs(u)) for u in uniforms]
        norm = _tensors.reduce_across(
            ops.sum, [ops.abs(ops.cast(g, "float32")) for g in samples]) + extra
    scale = radius / norm
    out = [g * ops.cast(_tensors.expand_to_rank(scale, len(g.shape)), g.dtype)
           for g in samples]
    return tree.pack_sequence_as(tensor_structure, out)


def _nth_seed(seed, index):
    """Distinct seeds for successive draws (a SeedGenerator advances)."""
    if isinstance(seed, numbers.Integral):
        return int(seed) + 7919 * index
    return seed
