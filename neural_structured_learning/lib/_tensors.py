"""Per-example reductions and other helpers of the `nsl.lib` modules.

Axis 0 is the batch axis. "Per example" means reduced over all other axes; for
a list of tensors, per-example reductions also run *across* the tensors, so
the list is treated as one concatenated vector per example.
"""

import numbers

import keras
import numpy as np
from keras import ops


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


def non_batch_axes(x):
    return tuple(range(1, len(x.shape)))


def per_example(reduce_fn, x):
    """Reduces `x` over its non-batch axes (a rank-1 `x` is returned)."""
    axes = non_batch_axes(x)
    return reduce_fn(x, axis=axes) if axes else x


def expand_to_rank(vector, rank):
    """Reshapes a per-example vector `[B]` to `[B, 1, ..., 1]`."""
    return ops.reshape(vector, (-1,) + (1,) * (rank - 1))


def reduce_across(reduce_fn, tensors):
    """Per-example reduction within and then across a list of tensors."""
    per_tensor = [per_example(reduce_fn, t) for t in tensors]
    if len(per_tensor) == 1:
        return per_tensor[0]
    return reduce_fn(ops.stack(per_tensor, axis=0), axis=0)


def is_float(x):
    return keras.backend.is_float_dtype(
        keras.backend.standardize_dtype(x.dtype))


def working_dtype(dtype):
    """float32 for the half-precision floats (float16, bfloat16), else
    `dtype`: the dtype NSL does its own arithmetic in under mixed precision,
    where half-precision steps and distances would be mostly rounding."""
    dtype = keras.backend.standardize_dtype(dtype)
    return "float32" if dtype in ("float16", "bfloat16") else dtype
