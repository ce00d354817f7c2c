"""The Square attack (L-infinity and L2): a gradient-free random search.

Andriushchenko, Croce, Flammarion and Hein (2020), "Square Attack: a
query-efficient black-box adversarial attack via random search",
https://arxiv.org/abs/1912.00049; reference code
https://github.com/fra31/auto-attack (`square.py`).

It uses only the model's scores, never its gradients, so it is not fooled by
gradient masking (obfuscated, shattered or saturated gradients): in AutoAttack
it is the check that the gradient attacks did not fail for that reason.
Written in `keras.ops`; the random proposals are drawn with NumPy from `seed`
(the same on every backend), and each example draws its own.
"""

import math
import time

import keras
import numpy as np
from keras import ops

from neural_structured_learning._core import progress as _progress
from neural_structured_learning._core import validation as _core_validation
from neural_structured_learning.evaluation import _apgd
from neural_structured_learning.evaluation import _attacks


def p_selection(p_init, it, n_queries):
    """The fraction of pixels in a square at query `it`: `p_init`, halved at
    queries 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of a budget
    rescaled to 10,000 queries."""
    it = int(it / n_queries * 10000)
    for bound, divisor in ((8000, 512), (6000, 256), (4000, 128),
                           (2000, 64), (1000, 32), (500, 16), (200, 8),
                           (50, 4), (10, 2)):
        if it > bound:
            return p_init / divisor
    return p_init


def _layout(shape, data_format):
    """`(h_axis, w_axis, c_axis)` of an input shape `(n, ...)`; `h_axis`
    None for a vector of features (squares are then windows), `c_axis`
    None without channels."""
    ndim = len(shape)
    if ndim == 2:
        return None, 1, None
    if ndim == 3:
        return 1, 2, None
    if ndim == 4:
        data_format = data_format or keras.config.image_data_format()
        if data_format == "channels_first":
            return 2, 3, 1
        if data_format == "channels_last":
            return 1, 2, 3
        raise ValueError(f"`data_format` must be 'channels_last' or "
                         f"'channels_first'. Received: {data_format!r}")
    raise ValueError(
        "The Square attack needs inputs of shape (n, features), (n, h, w) "
        f"or (n, h, w, c) / (n, c, h, w). Received shape {tuple(shape)}.")


def _margin(scores, labels):
    """`s_y - max_{j != y} s_j`: > 0 while the example is correct."""
    onehot = ops.one_hot(labels, scores.shape[-1], dtype=scores.dtype)
    true = ops.sum(scores * onehot, axis=-1)
    return true - ops.max(scores - onehot * 1e30, axis=-1)


def _square_linf_run(scorer, x, y, eps, n_queries, p_init, clip, layout, rng,
                     on_query, real):
    """One Square L-inf run on a batch (NumPy `x`, `y`) whose first `real`
    rows count (see `_apgd.run_batches`); returns NumPy `(x_best, fooled)`."""
    shape = x.shape
    n, ndim = shape[0], len(shape)
    h_axis, w_axis, c_axis = layout
    h = 1 if h_axis is None else shape[h_axis]
    w = shape[w_axis]
    c = 1 if c_axis is None else shape[c_axis]
    n_features = int(np.prod(shape[1:]))

    def per_example(v, axes_shape):
        return ops.convert_to_tensor(v.reshape(axes_shape).astype(np.float32))

    # Start: vertical stripes of +-eps (constant along the height).
    stripes = list(shape)
    if h_axis is not None:
        stripes[h_axis] = 1
    init = np.sign(2.0 * rng.random(stripes, dtype=np.float32) - 1.0)
    xt = ops.convert_to_tensor(x)
    yt = ops.convert_to_tensor(y)
    lower, upper = xt - eps, xt + eps
    x_best = _apgd.clip_to(xt + eps * ops.convert_to_tensor(init), clip)
    margin_min = _margin(scorer.scores(x_best), yt)
    coords = []
    for axis, size in ((h_axis, h), (w_axis, w)):
        if axis is None:
            coords.append(None)
            continue
        view = [1] * ndim
        view[axis] = size
        coords.append(ops.convert_to_tensor(
            np.arange(size, dtype=np.float32).reshape(view)))
    sign_shape = [n] + [1] * (ndim - 1)
    if c_axis is not None:
        sign_shape[c_axis] = c
    column = (n,) + (1,) * (ndim - 1)
    for i in range(n_queries):
        active = np.asarray(ops.convert_to_numpy(margin_min)) > 0
        if not active[:real].any():
            on_query(n_queries - i)
            break
        p = p_selection(p_init, i, n_queries)
        if h_axis is None:
            s_h, s_w = 1, max(round(p * w), 1)
        else:
            s_h = s_w = max(round(math.sqrt(p * n_features / c)), 1)
        # Every example draws its own square and signs, whether or not it is
        # still attacked: the stream of draws does not depend on the model.
        vh = rng.integers(0, max(h - s_h, 1), n)
        vw = rng.integers(0, max(w - s_w, 1), n)
        signs = np.sign(2.0 * rng.random(sign_shape, dtype=np.float32) - 1.0)
        mask = None
        for coord, start, size in ((coords[0], vh, s_h), (coords[1], vw, s_w)):
            if coord is None:
                continue
            start = per_example(start, column)
            inside = ops.logical_and(coord >= start, coord < start + size)
            mask = inside if mask is None else ops.logical_and(mask, inside)
        delta = ops.cast(mask, x_best.dtype) * (
            2.0 * eps * ops.convert_to_tensor(signs))
        x_new = _apgd.clip_to(ops.clip(x_best + delta, lower, upper), clip)
        margin = _margin(scorer.scores(x_new), yt)
        on_query()
        improved = ops.logical_and(ops.convert_to_tensor(active),
                                   margin < margin_min)
        margin_min = ops.where(improved, margin, margin_min)
        x_best = ops.where(ops.reshape(improved, column), x_new, x_best)
    fooled = np.asarray(ops.convert_to_numpy(margin_min)) <= 0
    return np.asarray(ops.convert_to_numpy(x_best)), fooled


def _channels_first(layout, ndim):
    """`(to, back)`: NumPy `x` to `(n, c, h, w)`, and tensors back."""
    if ndim == 3:
        return (lambda v: v[:, None]), (lambda v: v[:, 0])
    if layout[2] == 1:
        return (lambda v: v), (lambda v: v)
    return ((lambda v: np.ascontiguousarray(v.transpose(0, 3, 1, 2))),
            (lambda v: ops.transpose(v, (0, 2, 3, 1))))


def eta_rectangles(height, width):
    """The reference's concentric-rectangles pattern: rings of weight
    `1 / (k + 1)^2` around the centre, unit L2 norm."""
    delta = np.zeros((height, width), np.float64)
    row, col = height // 2, width // 2
    for k in range(max(row + 1, col + 1)):
        delta[max(row - k, 0):min(row - k + 2 * k + 1, height),
              max(col - k, 0):min(col - k + 2 * k + 1, width)] += (
                  1.0 / (k + 1) ** 2)
    return delta / np.sqrt((delta ** 2).sum())


def eta(s, transpose):
    """An `s x s` L2 square: `+eta_rectangles` on the top half and
    `-eta_rectangles` on the bottom half (transposed on request), unit L2
    norm."""
    delta = np.zeros((s, s), np.float64)
    delta[:s // 2] = eta_rectangles(s // 2, s) if s // 2 else 0.0
    delta[s // 2:] = -eta_rectangles(s - s // 2, s)
    delta /= np.sqrt((delta ** 2).sum())
    return (delta.T if transpose else delta).astype(np.float32)


def _square_l2_run(scores_of, x, y, eps, n_queries, p_init, clip, rng,
                   on_query, real):
    """One Square L2 run on a batch of channels-first images (NumPy `x`
    `(n, c, h, w)`, `y`) whose first `real` rows count; `scores_of` takes
    channels-first tensors. As in
    the reference, the squares' positions are shared by the batch at each
    query; their signs are per example and channel."""
    n, c, h, w = x.shape
    n_features = c * h * w
    xt, yt = ops.convert_to_tensor(x), ops.convert_to_tensor(y)

    def norm_of(v):
        return ops.sqrt(ops.sum(ops.square(v), axis=(1, 2, 3),
                                keepdims=True))

    def signs():
        return np.sign(2.0 * rng.random((n, c, 1, 1), dtype=np.float32)
                       - 1.0)

    def place(patch, top, left, size):
        return ops.pad(patch, [(0, 0), (0, 0), (top, h - size - top),
                               (left, w - size - left)])

    def window(mask_of, top, left, size):
        return ops.slice(mask_of, [0, 0, top, left], [n, c, size, size])

    # Start: a grid of `h // 5` squares with random signs, on the sphere.
    s = h // 5
    start = (h - s * 5) // 2
    init = np.zeros(x.shape, np.float32)
    for top in range(start, start + s * (h // s), s):
        for left in range(start, start + s * (w // s), s):
            if top + s > h or left + s > w:
                continue
            init[:, :, top:top + s, left:left + s] += eta(
                s, rng.random() > 0.5)[None, None] * signs()
    init = init / (np.sqrt((init ** 2).sum(axis=(1, 2, 3), keepdims=True))
                   + 1e-12)
    x_best = _apgd.clip_to(xt + eps * ops.convert_to_tensor(init), clip)
    margin_min = _margin(scores_of(x_best), yt)
    for i in range(n_queries):
        active = np.asarray(ops.convert_to_numpy(margin_min)) > 0
        if not active[:real].any():
            on_query(n_queries - i)
            break
        delta = x_best - xt
        p = p_selection(p_init, i, n_queries)
        s = max(round(math.sqrt(p * n_features / c)), 3)
        s += 1 - s % 2  # Odd.
        s = min(s, h, w)
        vh, vw = (int(rng.integers(0, max(h - s, 1))),
                  int(rng.integers(0, max(w - s, 1))))
        vh2, vw2 = (int(rng.integers(0, max(h - s, 1))),
                    int(rng.integers(0, max(w - s, 1))))
        ones = ops.ones((1, 1, s, s), dtype=delta.dtype)
        mask = ops.maximum(place(ones, vh, vw, s), place(ones, vh2, vw2, s))
        old = window(delta, vh, vw, s)
        old_norm = ops.sqrt(ops.sum(ops.square(old), axis=(2, 3),
                                    keepdims=True))
        norms_image = norm_of(delta)
        norms_windows = norm_of(delta * mask)
        new = ops.convert_to_tensor(
            eta(s, rng.random() > 0.5)[None, None] * signs())
        new = new + old / (old_norm + 1e-12)
        new_norm = ops.sqrt(ops.sum(ops.square(new), axis=(2, 3),
                                    keepdims=True))
        budget = ops.maximum(eps ** 2 - ops.square(norms_image), 0.0) / c
        new = new / (new_norm + 1e-12) * ops.sqrt(
            budget + ops.square(norms_windows))
        second = place(ones, vh2, vw2, s)
        first = place(ones, vh, vw, s)
        delta = delta * (1.0 - ops.maximum(first, second)) + place(
            new, vh, vw, s)
        x_new = _apgd.clip_to(xt + delta / (norm_of(delta) + 1e-12) * eps,
                              clip)
        margin = _margin(scores_of(x_new), yt)
        on_query()
        improved = ops.logical_and(ops.convert_to_tensor(active),
                                   margin < margin_min)
        margin_min = ops.where(improved, margin, margin_min)
        x_best = ops.where(ops.reshape(improved, (n, 1, 1, 1)), x_new,
                           x_best)
    fooled = np.asarray(ops.convert_to_numpy(margin_min)) <= 0
    return np.asarray(ops.convert_to_numpy(x_best)), fooled


def square(model, x, y, eps, norm="infinity", *, n_queries=5000, p_init=0.8,
           restarts=1, clip=None, output="auto", data_format=None,
           batch_size=256, seed=0, progress=None, robust=None):
    """The Square attack (Andriushchenko et al., 2020), L-infinity or L2.

    A random search on the margin `s_y - max_{j != y} s_j` of the model's
    scores; a proposal is kept if it lowers the margin, and an example
    stops once it is misclassified. The squares have side
    `sqrt(p * h * w)`, with `p` starting at `p_init` and halved on a fixed
    schedule (`p_selection`).

    * L-infinity: starts from vertical stripes of `+-eps`; each query sets
      a square at a random position (drawn per example) to `x +- eps`
      (a random sign per channel). Inputs of shape `(n, features)` are
      treated as one row (squares are windows of `p * features`).
    * L2 (images of >= 5 x 5 pixels): starts from a grid of `h // 5`
      squares of the `eta` pattern, on the sphere of radius `eps`; each
      query moves the perturbation's mass of two squares (positions shared
      by the batch, as in the reference) into one new `eta` square with a
      random sign per channel, and renormalises to `eps`.

    Each restart attacks the examples still classified correctly.

    Args:
        model: a Keras model (or callable) returning logits or
            probabilities (the margin of log-probabilities equals that of
            the logits).
        x: float array `(n, ...)`: `(n, features)`, `(n, h, w)` or images.
        y: int labels `(n,)` or one-hot `(n, C)`.
        eps: radius of the ball.
        norm: 'infinity' (or 'linf') or 'l2'.
        n_queries: model evaluations per example and restart (5000 in
            AutoAttack).
        p_init: initial fraction of pixels changed (0.8).
        restarts: restarts from new random starts.
        clip: optional `(min, max)` of the valid input range.
        output: 'auto', 'logits' or 'probabilities'.
        data_format: 'channels_last' or 'channels_first' for 4-D inputs
            (default: `keras.config.image_data_format()`).
        batch_size: examples per batch.
        seed: seed of the random search.
        progress: show a progress bar of the queries (tqdm, stderr).
        robust: optional bool array `(n,)`: attack only these examples
            (those False count as not robust).

    Returns:
        An `AttackResult` (`evaluations` counts batch queries).
    """
    eps = _attacks._check_eps(eps)
    norm = _attacks.canonical_norm(norm)
    if norm not in ("infinity", "l2"):
        raise ValueError("The Square attack supports the 'infinity' and "
                         f"'l2' norms. Received: norm={norm!r}")
    n_queries = _core_validation.check_int("n_queries", n_queries, 1)
    restarts = _core_validation.check_int("restarts", restarts, 1)
    if not 0 < p_init <= 1:
        raise ValueError(f"`p_init` must be in (0, 1]. Received: {p_init!r}")
    scorer, x, y, clip, batch_size = _apgd.setup(
        model, x, y, clip, output, batch_size)
    layout = _layout(x.shape, data_format)
    if norm == "l2" and (layout[0] is None or min(
            x.shape[layout[0]], x.shape[layout[1]]) < 5):
        raise ValueError(
            "The L2 Square attack needs images of at least 5 x 5 pixels, "
            "(n, h, w) or (n, h, w, c) / (n, c, h, w). Received shape "
            f"{x.shape}.")
    begin = time.perf_counter()
    _, correct, still, x_adv = _apgd.begin(scorer, x, y, robust, batch_size)
    rng = np.random.default_rng(seed)
    name = f"Square {_attacks.NORM_LABELS[norm]} eps={eps:g}"
    batches = _apgd.batches_of(int(still.sum()), batch_size)
    total = restarts * batches * n_queries
    with _progress.progress_bar(total=total, desc=name, unit="query",
                                unit_scale=False, enabled=progress) as bar:
        for _ in range(restarts):

            def attack_batch(xb, yb, idx, real):
                del idx
                if norm == "infinity":
                    return _square_linf_run(scorer, xb, yb, eps, n_queries,
                                            p_init, clip, layout, rng,
                                            bar.update, real)
                to_cf, from_cf = _channels_first(layout, len(xb.shape))
                adv, fooled = _square_l2_run(
                    lambda v: scorer.scores(from_cf(v)), to_cf(xb), yb, eps,
                    n_queries, p_init, clip, rng, bar.update, real)
                return np.asarray(ops.convert_to_numpy(from_cf(
                    ops.convert_to_tensor(adv)))), fooled

            _apgd.run_round(scorer, x, y, still, x_adv, attack_batch,
                            batch_size, bar=bar, initial=batches,
                            per_batch=n_queries, skip=eps == 0)
    return _apgd.finish(name, x_adv, still, correct, scorer, begin)
