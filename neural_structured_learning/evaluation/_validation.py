"""Checks of the evaluation's inputs, run once at the boundary."""

import numbers

import numpy as np

from neural_structured_learning._core import validation as _core_validation
from neural_structured_learning.evaluation import _attacks


def check_inputs(x, clip):
    """Returns `(x as float32 array, clip as (float, float) or None)`.

    Raises:
        TypeError: if `x` is not numeric.
        ValueError: for an empty `x`, a malformed `clip`, or values of `x`
            outside `clip`.
    """
    array = np.asarray(x)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                     or array.dtype == bool):
        raise TypeError(f"`x` must be a numeric array. Received dtype "
                        f"{array.dtype}.")
    if array.ndim < 2 or len(array) == 0:
        raise ValueError(
            "`x` must have shape (n, ...) with n >= 1 examples and at least "
            f"one feature axis. Received shape {array.shape}.")
    array = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`x` has {int(np.sum(~np.isfinite(array)))} NaN or "
                         "Inf values.")
    if clip is None:
        return array, None
    clip = _check_clip(clip)
    low, high = clip
    outside = (array < low) | (array > high)
    if outside.any():
        raise ValueError(
            f"`x` has {int(outside.sum())} values outside the clip range "
            f"[{low:g}, {high:g}] declared by `clip`: min {array.min():g}, "
            f"max {array.max():g}. Attacks clip their inputs to `clip`, so "
            "it must be the range the data lives in: rescale `x` (e.g. "
            "x / 255 for 8-bit images) or pass its actual range.")
    return array, clip


def _check_clip(clip):
    try:
        low, high = clip
    except (TypeError, ValueError):
        raise ValueError(f"`clip` must be a pair (min, max) or None. "
                         f"Received: clip={clip!r}") from None
    ok = all(isinstance(v, numbers.Real) and not isinstance(v, bool)
             and np.isfinite(v) for v in (low, high))
    if not ok or not low < high:
        raise ValueError(f"`clip` must be a pair of finite numbers with "
                         f"min < max. Received: clip={clip!r}")
    return float(low), float(high)


def check_labels(y, n, num_classes):
    """Returns the labels as an int32 array `(n,)`.

    Accepts class indices `(n,)` or `(n, 1)`, or one-hot rows `(n, C)`.

    Raises:
        ValueError: for the wrong number of labels, non-integer values, or
            labels outside `[0, num_classes)`.
    """
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == num_classes and (
            num_classes > 1):
        rows_ok = np.all((labels == 0) | (labels == 1), axis=1) & (
            labels.sum(axis=1) == 1)
        if not rows_ok.all():
            bad = int(np.flatnonzero(~rows_ok)[0])
            raise ValueError(
                f"`y` has shape {labels.shape}, read as one-hot labels, but "
                f"row {bad} is {labels[bad].tolist()}: give class indices "
                "(n,) or one-hot rows.")
        labels = labels.argmax(axis=1)
    elif labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(
            f"`y` must hold one label per example of `x`: shape ({n},) of "
            f"class indices or ({n}, {num_classes}) one-hot. Received shape "
            f"{labels.shape}.")
    if not (np.issubdtype(labels.dtype, np.number)
            or labels.dtype == bool):
        raise ValueError(f"`y` must hold integer class indices. Received "
                         f"dtype {labels.dtype}.")
    if np.any(labels != np.round(labels)):
        raise ValueError("`y` must hold integer class indices. Received "
                         f"non-integer values, e.g. "
                         f"{labels[labels != np.round(labels)][0].item()!r}.")
    outside = (labels < 0) | (labels >= num_classes)
    if outside.any():
        values = sorted(set(np.asarray(labels[outside]).tolist()))
        raise ValueError(
            f"`y` has {int(outside.sum())} labels outside [0, {num_classes}) "
            f"(the model has {num_classes} classes): {values[:5]}"
            f"{' ...' if len(values) > 5 else ''}. Labels must be class "
            "indices of the model's outputs.")
    return labels.astype(np.int32)


def check_batch_size(batch_size):
    return _core_validation.check_int("batch_size", batch_size, 1)


def check_attacks(attacks):
    """Returns `attacks` as a non-empty list of `Attack`."""
    if isinstance(attacks, _attacks.Attack):
        attacks = [attacks]
    attacks = list(attacks)
    for attack in attacks:
        if not isinstance(attack, _attacks.Attack):
            raise TypeError(
                "`attacks` must be a list of nsl.evaluation.Attack (e.g. "
                "from nsl.evaluation.attack_grid). Received an element of "
                f"type {type(attack).__name__}: {attack!r}")
    if not attacks:
        raise ValueError("`attacks` is empty: give at least one Attack.")
    return attacks


def check_sources(sources):
    """Returns `sources` as a dict `{name: model}`."""
    if sources is None:
        return {}
    if not isinstance(sources, dict):
        raise TypeError(f"`sources` must be a dict {{name: model}}. "
                        f"Received: {type(sources).__name__}")
    if "white-box" in sources:
        raise ValueError("`sources` may not use the name 'white-box', which "
                         "labels attacks on the model itself.")
    return {str(k): v for k, v in sources.items()}
