"""FAB-T: the targeted Fast Adaptive Boundary attack (L-infinity and L2).

Croce and Hein (2020), "Minimally distorted adversarial examples with a fast
adaptive boundary attack", https://arxiv.org/abs/1907.02044; reference code
https://github.com/fra31/auto-attack (`fab_pt.py`), the version AutoAttack's
'standard' ensemble runs (targeted, 9 target classes, 100 iterations).

FAB looks for the *smallest* perturbation that changes the class, not for the
largest loss in the ball: at each iterate it linearises the margin between the
true class `y` and the target `t`,

    g(x') ~= g(x) + <grad g(x), x' - x>,   g = s_t - s_y,

projects both the iterate and the original point onto the hyperplane
`g = 0` (intersected with the input box, minimal L-p distance: `project`),
moves to a convex combination of the two projections (weight `alpha` on the
original's, at most `alpha_max`), overshooting by `eta`, and, once the
iterate is misclassified, records it if it is the closest found and steps
back towards the original point by the factor `beta`. An example counts as
fooled when the closest misclassified point found is within `eps`.

Written in `keras.ops` with the input gradients of `nsl.lib.gradients`; the
projections are sorts, cumulative sums and a fixed-length bisection, the
same on every backend.
"""

import math
import time

import numpy as np
from keras import ops

from neural_structured_learning._core import progress as _progress
from neural_structured_learning._core import validation as _core_validation
from neural_structured_learning.evaluation import _apgd
from neural_structured_learning.evaluation import _attacks

_BIG = 1e12  # The reference's stand-in for an infinite ratio (L2).


def _at(v, index):
    """`v[i, index[i]]` for a `(m, D)` tensor and int `(m,)` indices."""
    return ops.take_along_axis(v, ops.expand_dims(index, 1), axis=1)[:, 0]


def _nonzero_or_one(v):
    return ops.where(v == 0, ops.ones_like(v), v)


def _bisect(rows, size, positive):
    """The reference's bisection, per row: `ceil(log2(size))` halvings of
    `[lb, ub] = [0, size - 1]`, moving `lb` up to the midpoint where
    `positive(mid)` (bool `(rows,)`, given int32 `(rows,)` indices) holds,
    else `ub` down to it. Returns `lb` (int32)."""
    lb = ops.zeros((rows,), dtype="float32")
    ub = lb + float(size - 1)
    for _ in range(math.ceil(math.log2(size))):
        mid = ops.floor((lb + ub) / 2.0)
        ok = positive(ops.cast(mid, "int32"))
        lb = ops.where(ok, mid, lb)
        ub = ops.where(ok, ub, mid)
    return ops.cast(lb, "int32")


def _project_linf_unit_box(t, w, b):
    """Minimal-L-inf `d` with `<w, t + d> = b` and `0 <= t + d <= 1` (rows of
    `(m, D)` tensors); where the box does not reach the hyperplane, the
    corner of the box closest to it. The reference's `projection_linf`.

    With the sign of `w` chosen so that `<w, t> >= b` must decrease, moving
    coordinate `i` by `lambda` towards its box face `a_i` (0 or 1) changes
    `<w, t + d>` by `-|w_i| min(lambda, p_i)`, `p_i` the distance to that
    face; the smallest `lambda` that closes the gap is found by sorting `p`
    and bisecting the cumulative sums.
    """
    size = t.shape[1]
    dtype = t.dtype
    sign = ops.where(ops.sum(w * t, axis=1) - b >= 0, 1.0, -1.0)
    w = w * ops.expand_dims(sign, 1)
    b = b * sign
    a = ops.cast(w < 0, dtype)
    nonzero = ops.cast(w != 0, dtype)
    d = (a - t) * nonzero  # To the far face: the largest change.
    p = a - t * (2.0 * a - 1.0)  # Distance to the far face.
    order = ops.argsort(p, axis=1)
    b = b - ops.sum(w * t, axis=1)
    b0 = ops.sum(w * d, axis=1)
    reverse = ops.flip(order, axis=1)
    w_sorted = ops.take_along_axis(w, reverse, axis=1)
    s = ops.cumsum(ops.abs(w_sorted), axis=1)
    sb = ops.cumsum(-w_sorted * ops.take_along_axis(d, reverse, axis=1),
                    axis=1) + ops.expand_dims(b0, 1)
    b2 = sb[:, -1] - s[:, -1] * _at(p, order[:, 0])
    whole = b - b2 > 0  # Reached before any coordinate hits its face.
    partly = ops.logical_and(b - b0 > 0, ops.logical_not(whole))

    def positive(k):
        current = _at(order, size - 1 - k)
        return b - (_at(sb, k) - _at(s, k) * _at(p, current)) > 0

    lb = _bisect(t.shape[0], size, positive)
    lam_whole = ops.maximum((b - sb[:, -1]) / -_nonzero_or_one(s[:, -1]), 0)
    d_whole = (2.0 * a - 1.0) * ops.expand_dims(lam_whole, 1)
    lam = ops.expand_dims(ops.maximum(
        (b - _at(sb, lb)) / -_nonzero_or_one(_at(s, lb)), 0), 1)
    d_partly = ops.minimum(lam, d) * a + ops.maximum(-lam, d) * (1.0 - a)
    d = ops.where(ops.expand_dims(whole, 1), d_whole,
                  ops.where(ops.expand_dims(partly, 1), d_partly, d))
    return d * nonzero


def _project_l2_unit_box(t, w, b):
    """Minimal-L2 `d` with `<w, t + d> = b` and `0 <= t + d <= 1`; where the
    box does not reach the hyperplane, the box point closest to it. The
    reference's `projection_l2`: `d_i = clip(-lambda w_i, -t_i, 1 - t_i)`
    with `lambda` found by sorting the breakpoints `r_i` where coordinate `i`
    hits the box and bisecting the piecewise-linear `<w, d(lambda)>`."""
    size = t.shape[1]
    dtype = t.dtype
    c = ops.sum(w * t, axis=1) - b
    sign = ops.where(c >= 0, 1.0, -1.0)
    w = w * ops.expand_dims(sign, 1)
    c = c * sign
    small = ops.abs(w) < 1e-8
    safe = ops.where(small, ops.ones_like(w), w)
    r = ops.clip(ops.maximum(t / safe, (t - 1.0) / safe), -_BIG, _BIG)
    r = ops.where(ops.logical_or(small, r == -_BIG), _BIG, r)
    order = ops.argsort(r, axis=1)
    rs = ops.take_along_axis(r, order, axis=1)
    rs2 = ops.concatenate([rs[:, 1:], ops.zeros_like(rs[:, :1])], axis=1)
    rs = ops.where(rs == _BIG, ops.zeros_like(rs), rs)
    rs2 = ops.where(rs2 == _BIG, ops.zeros_like(rs2), rs2)
    w3s = ops.take_along_axis(w * w, order, axis=1)
    w5 = ops.sum(w3s, axis=1, keepdims=True)
    ws = w5 - ops.cumsum(w3s, axis=1)
    keep = ops.cast(ops.logical_not(small), dtype)
    d = -(r * w) * keep
    s = ops.concatenate(
        [-w5 * rs[:, :1],
         ops.cumsum((rs - rs2) * ws, axis=1) - w5 * rs[:, :1]], axis=1)
    all_free = s[:, 0] + c < 0  # No coordinate hits the box.
    none = ops.sum(d * w, axis=1) + c > 0  # Even the whole box falls short.
    partly = ops.logical_not(ops.logical_or(all_free, none))

    def positive(k):
        return _at(s, k) + c > 0

    lb = _bisect(t.shape[0], size, positive)
    d_free = -ops.expand_dims(c / _nonzero_or_one(w5[:, 0]), 1) * w
    ws_lb = _at(ws, lb)
    alpha = (_at(s, lb) + c) / _nonzero_or_one(ws_lb) + _at(rs, lb)
    alpha = ops.expand_dims(ops.where(ws_lb == 0, 0.0, alpha), 1)
    beyond = ops.cast(alpha > r, dtype)
    d_partly = d * beyond - alpha * w * (1.0 - beyond)
    d = ops.where(ops.expand_dims(all_free, 1), d_free,
                  ops.where(ops.expand_dims(partly, 1), d_partly, d))
    return d * keep


def project(t, w, b, norm, clip=None):
    """The minimal-norm step onto the hyperplane `<w, x> = b`.

    For each row of the `(m, D)` tensors `t` (points) and `w`, and `b`
    `(m,)`, returns `d` minimising `||d||_p` subject to `<w, t + d> = b` and,
    with `clip = (low, high)`, `low <= t + d <= high` (where the box does not
    reach the hyperplane: the box point nearest to it in that sense). Without
    `clip` it is the closed form

        L-inf: d = (b - <w, t>) sign(w) / ||w||_1
        L2:    d = (b - <w, t>) w / ||w||_2^2.

    A box is mapped onto `[0, 1]^D` (the same minimiser for a common
    scale) and solved as in the reference code (sorts and a bisection).
    """
    if clip is None:
        gap = b - ops.sum(w * t, axis=1)
        if norm == "infinity":
            scale = ops.sum(ops.abs(w), axis=1)
            direction = ops.sign(w)
        else:
            scale = ops.sum(w * w, axis=1)
            direction = w
        return direction * ops.expand_dims(gap / _nonzero_or_one(scale), 1)
    low, high = clip
    span = high - low
    unit = (t - low) / span
    w_unit = w * span
    b_unit = b - low * ops.sum(w, axis=1)
    solve = (_project_linf_unit_box if norm == "infinity"
             else _project_l2_unit_box)
    return solve(unit, w_unit, b_unit) * span


def _norms(v, norm):
    if norm == "infinity":
        return ops.max(ops.abs(v), axis=1)
    return ops.sqrt(ops.sum(v * v, axis=1))


def _fab_run(scorer, x, y, target, eps, norm, steps, alpha_max, eta, beta,
             clip, start, on_step, real):
    """One FAB-T run on a batch (tensors `x`, `y`, `target`) whose first
    `real` rows count (see `_apgd.run_batches`) from `start` (None: the
    original point). Returns NumPy `(x_closest_adv, fooled)`,
    fooled meaning a misclassified point within `eps` was found."""
    n = x.shape[0]
    shape = x.shape
    x0 = ops.reshape(x, (n, -1))
    x1 = x0 if start is None else ops.reshape(
        _apgd.clip_to(x + ops.convert_to_tensor(start), clip), (n, -1))
    best = x0
    best_norm = ops.full((n,), 1e10, dtype=x0.dtype)

    def margin(scores):
        # g = s_t - s_y: positive once the target beats the true class.
        return _at(scores, target) - _at(scores, y)

    for i in range(steps):
        _, g, grad = scorer.scores_and_gradient(ops.reshape(x1, shape),
                                                margin)
        w = ops.reshape(grad, (n, -1))
        b = -g + ops.sum(w * x1, axis=1)
        d = project(ops.concatenate([x1, x0], axis=0),
                    ops.concatenate([w, w], axis=0),
                    ops.concatenate([b, b], axis=0), norm, clip)
        d1, d2 = d[:n], d[n:]
        size = ops.maximum(_norms(d, norm), 1e-8)
        a1, a2 = size[:n], size[n:]
        alpha = ops.expand_dims(
            ops.minimum(ops.maximum(a1 / (a1 + a2), 0.0), alpha_max), 1)
        x1 = _apgd.clip_to((x1 + eta * d1) * (1.0 - alpha)
                           + (x0 + eta * d2) * alpha, clip)
        scores = scorer.scores(ops.reshape(x1, shape))
        wrong = ops.argmax(scores, axis=-1) != y
        distance = _norms(x1 - x0, norm)
        closer = ops.logical_and(wrong, distance < best_norm)
        best = ops.where(ops.expand_dims(closer, 1), x1, best)
        best_norm = ops.where(closer, distance, best_norm)
        x1 = ops.where(ops.expand_dims(wrong, 1), x0 + (x1 - x0) * beta, x1)
        on_step()
        if i % 10 == 9 and bool(ops.convert_to_numpy(
                ops.all(best_norm[:real] <= eps))):
            # Every example has a point within eps: later iterations only
            # shrink it, which does not change the robust accuracy.
            on_step(steps - i - 1)
            break
    fooled = np.asarray(ops.convert_to_numpy(best_norm)) <= eps
    return (np.asarray(ops.convert_to_numpy(ops.reshape(best, shape))),
            fooled)


def fab_targeted(model, x, y, eps, norm="infinity", *, n_target_classes=9,
                 steps=100, restarts=1, alpha_max=0.1, eta=1.05, beta=0.9,
                 clip=None, output="auto", batch_size=256, seed=0,
                 progress=None, robust=None):
    """Targeted FAB (FAB-T, Croce and Hein, 2020), L-infinity or L2.

    For each of the `n_target_classes` classes ranked 2nd, 3rd, ... by the
    model on the clean input (as APGD-T), runs FAB towards that target on
    the examples no earlier target fooled. One iteration, from the iterate
    `x_k` and the original `x`, with `g = s_t - s_y` linearised at `x_k`:

        d1 = project(x_k), d2 = project(x)     (onto g = 0, in the box)
        alpha = min(max(||d1|| / (||d1|| + ||d2||), 0), alpha_max)
        x_{k+1} = clip((1 - alpha) (x_k + eta d1) + alpha (x + eta d2))

    and, if `x_{k+1}` is misclassified, it is recorded when it is the
    closest so far and `x_{k+1} <- x + beta (x_{k+1} - x)`. The first run
    starts at `x` (no random draw, as in AutoAttack), each further restart
    at a random point at half the radius. An example is fooled when the
    closest misclassified point is within `eps`; its `x_adv` is that point.
    Two model evaluations per iteration (a forward-backward and a forward).

    Args:
        model: a Keras model (or callable) returning logits or
            probabilities (`g` on log-probabilities equals that of the
            logits).
        x: float array `(n, ...)`.
        y: int labels `(n,)` or one-hot `(n, C)`.
        eps: radius within which a point counts.
        norm: 'infinity' (or 'linf') or 'l2'.
        n_target_classes: target classes (at most `C - 1`; 9 in
            AutoAttack).
        steps: iterations per target and restart (100 in AutoAttack).
        restarts: runs per target (1 in AutoAttack).
        alpha_max, eta, beta: the published 0.1, 1.05 and 0.9.
        clip: optional `(min, max)` of the valid input range; the
            projections stay inside it.
        output: 'auto', 'logits' or 'probabilities'.
        batch_size: examples per batch.
        seed: seed of the restarts' random starts.
        progress: show a progress bar of the iterations (tqdm, stderr).
        robust: optional bool array `(n,)`: attack only these examples
            (those False count as not robust).

    Returns:
        An `AttackResult` (`evaluations` counts model evaluations per
        batch, two per iteration).
    """
    eps, norm, steps, restarts = _apgd.check_common("FAB-T", eps, norm,
                                                    steps, restarts)
    for field, value, upper in (("alpha_max", alpha_max, 1.0),
                                ("beta", beta, 1.0)):
        if not 0 < value <= upper:
            raise ValueError(f"`{field}` must be in (0, 1]. Received: "
                             f"{field}={value!r}")
    if not eta >= 1:
        raise ValueError(f"`eta` (the overshoot) must be >= 1. Received: "
                         f"eta={eta!r}")
    scorer, x, y, clip, batch_size = _apgd.setup(model, x, y, clip, output,
                                                 batch_size)
    n_target_classes = min(_core_validation.check_int(
        "n_target_classes", n_target_classes, 1), scorer.num_classes - 1)
    begin = time.perf_counter()
    clean, correct, still, x_adv = _apgd.begin(scorer, x, y, robust,
                                               batch_size)
    rng = np.random.default_rng(seed)
    name = f"FAB-T {_attacks.NORM_LABELS[norm]} eps={eps:g}"
    initial = _apgd.batches_of(int(still.sum()), batch_size)
    total = n_target_classes * restarts * steps * initial
    with _progress.progress_bar(total=total, desc=name, unit="step",
                                unit_scale=False, enabled=progress) as bar:
        for targets in _apgd.ranked_targets(clean, n_target_classes):
            for restart in range(restarts):

                def attack_batch(xb, yb, idx, real, targets=targets,
                                 restart=restart):
                    start = None if restart == 0 else (
                        _apgd._random_start(  # pylint: disable=protected-access
                            rng, xb.shape, 0.5 * eps, norm))
                    return _fab_run(
                        scorer, ops.convert_to_tensor(xb),
                        ops.convert_to_tensor(yb),
                        ops.convert_to_tensor(targets[idx]), eps, norm,
                        steps, alpha_max, eta, beta, clip, start, bar.update,
                        real)

                _apgd.run_round(scorer, x, y, still, x_adv, attack_batch,
                                batch_size, bar=bar, initial=initial,
                                per_batch=steps, skip=eps == 0)
    return _apgd.finish(name, x_adv, still, correct, scorer, begin)
