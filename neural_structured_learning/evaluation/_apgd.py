"""Auto-PGD (APGD-CE, APGD-DLR, APGD-T): step-size-free PGD of AutoAttack.

Croce and Hein (2020), "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", https://arxiv.org/abs/2003.01690,
reference code https://github.com/fra31/auto-attack (`autopgd_base.py`).

Written in `keras.ops`, with the input gradients of `nsl.lib.gradients` (the
library's only backend-specific code), so it runs on TensorFlow, JAX and
PyTorch. Random starts are drawn with NumPy from `seed`, so every backend
starts from the same points and a run is deterministic given `seed` and
`batch_size`.
"""

import dataclasses
import math
import time

import keras
import numpy as np
from keras import ops

from neural_structured_learning._core import progress as _progress
from neural_structured_learning._core import validation as _core_validation
from neural_structured_learning.evaluation import _attacks
from neural_structured_learning.evaluation import _outputs
from neural_structured_learning.evaluation import _validation
from neural_structured_learning.lib import gradients

LOSSES = ("ce", "dlr")
_NORMS = ("infinity", "l2")
# As in the reference code: DLR denominators, normalisations.
_DLR_EPS = 1e-12


@dataclasses.dataclass
class AttackResult:
    """What one attack (APGD, APGD-T, Square) did to a set of examples.

    Attributes:
        name: the attack, e.g. 'APGD-CE Linf eps=0.3'.
        x_adv: float32 array shaped like `x`: for each example the first
            adversarial point found (misclassified), else `x` itself.
        robust: bool array `(n,)`: correct on `x` and on every point the
            attack tried (False for examples that were not attacked because
            they were already misclassified).
        accuracy: `robust.mean()`, the robust accuracy.
        clean_accuracy: accuracy on `x`.
        evaluations: model evaluations, one per batch (gradient evaluations
            for APGD, queries for Square).
        seconds: wall time.
    """

    name: str
    x_adv: np.ndarray
    robust: np.ndarray
    accuracy: float
    clean_accuracy: float
    evaluations: int
    seconds: float


class Scorer:
    """A model with its detected output kind: class scores, losses and their
    input gradients, predictions. Counts model evaluations."""

    def __init__(self, model, output="auto", sample=None):
        if not callable(model):
            raise TypeError(f"`model` must be a Keras model or a callable "
                            f"returning class scores. Received: "
                            f"{type(model).__name__}")
        self.model = model
        self.evaluations = 0
        outputs = self._call(ops.convert_to_tensor(sample))
        if isinstance(outputs, (list, tuple, dict)):
            raise TypeError("`model` must have a single output of class "
                             "scores.")
        self.kind = _outputs.detect_output_kind(
            np.asarray(ops.convert_to_numpy(outputs)), output, model=model)
        self.num_classes = self.kind.num_classes

    def _call(self, x):
        if isinstance(self.model, keras.layers.Layer):
            return self.model(x, training=False)
        return self.model(x)

    def scores(self, x):
        """Class scores `(batch, C)` (logits, or log-probabilities) of a
        tensor `x`; one model evaluation."""
        self.evaluations += 1
        return ops.stop_gradient(
            _outputs.log_scores(self._call(x), self.kind))

    def scores_and_gradient(self, x, loss_fn):
        """`(scores, per-example loss, d sum(loss) / d x)` at a tensor `x`;
        one model evaluation (forward and backward)."""
        self.evaluations += 1

        def forward(xs):
            return _outputs.log_scores(self._call(xs[0]), self.kind)

        with gradients.scratch_scope():
            scores, loss_gradients = gradients.forward_with_loss_gradients(
                forward, [x])
            grads, _ = loss_gradients(lambda s: ops.sum(loss_fn(s)))
        scores = ops.stop_gradient(scores)
        return scores, loss_fn(scores), grads[0]

    def predict(self, x, batch_size):
        """Scores (NumPy `(n, C)`) of a NumPy array, in batches (a last
        short batch padded to `padded_size`)."""
        out = []
        for start in range(0, len(x), batch_size):
            rows = np.arange(start, min(start + batch_size, len(x)))
            padded = np.resize(rows, padded_size(len(rows), batch_size))
            out.append(ops.convert_to_numpy(self.scores(
                ops.convert_to_tensor(x[padded])))[:len(rows)])
        return np.concatenate(out).astype(np.float64)


def padded_size(n, batch_size):
    """The size a batch of `n <= batch_size` examples is padded to: the
    next power of two, at least 8, at most `batch_size`.

    The attacks run each batch at this size (the extra rows repeat the
    batch's examples and are dropped from the results), so that as the set
    of still-robust examples shrinks from round to round they reuse a few
    shapes: eager JAX compiles every operation once per shape (about 2.5 s
    per new shape for an APGD run of a small MLP, against 0.4 s for the
    run itself); TensorFlow and PyTorch only pay for the extra rows, which
    only short batches have (at most as many as the real ones).
    """
    return min(max(1 << (n - 1).bit_length(), 8), batch_size)


def ce_loss(scores, labels):
    """Per-example cross-entropy `logsumexp(s) - s_y`."""
    onehot = ops.one_hot(labels, scores.shape[-1], dtype=scores.dtype)
    return ops.logsumexp(scores, axis=-1) - ops.sum(scores * onehot, axis=-1)


def dlr_loss(scores, labels):
    """Per-example untargeted DLR loss (Croce and Hein, 2020, eq. 5):

        -(s_y - max_{j != y} s_j) / (s_(1) - s_(3) + 1e-12)

    with `s_(1) >= s_(2) >= ...` the sorted scores. Shift- and
    scale-invariant: on log-probabilities (`s = z - logsumexp(z)`) it equals
    the DLR loss of the logits `z`. Needs >= 3 classes.
    """
    onehot = ops.one_hot(labels, scores.shape[-1], dtype=scores.dtype)
    true = ops.sum(scores * onehot, axis=-1)
    best_other = ops.max(scores - onehot * 1e30, axis=-1)
    top = ops.top_k(scores, 3, sorted=True)[0]
    return -(true - best_other) / (top[:, 0] - top[:, 2] + _DLR_EPS)


def dlr_targeted_loss(scores, labels, targets):
    """Per-example targeted DLR loss (Croce and Hein, 2020, eq. 6):

        -(s_y - s_t) / (s_(1) - (s_(3) + s_(4)) / 2 + 1e-12)

    Shift- and scale-invariant, so the same on logits and on
    log-probabilities. Needs >= 4 classes.
    """
    num_classes = scores.shape[-1]
    onehot = ops.one_hot(labels, num_classes, dtype=scores.dtype)
    target = ops.one_hot(targets, num_classes, dtype=scores.dtype)
    top = ops.top_k(scores, 4, sorted=True)[0]
    margin = ops.sum(scores * onehot, axis=-1) - ops.sum(
        scores * target, axis=-1)
    return -margin / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _DLR_EPS)


def _per_example(v, ndim):
    return ops.reshape(v, (-1,) + (1,) * (ndim - 1))


def _l2_norm(v):
    flat = ops.reshape(v, (v.shape[0], -1))
    return _per_example(ops.sqrt(ops.sum(flat * flat, axis=-1)), len(v.shape))


def _linf_norm(v):
    flat = ops.reshape(v, (v.shape[0], -1))
    return _per_example(ops.max(ops.abs(flat), axis=-1), len(v.shape))


def clip_to(v, clip):
    return v if clip is None else ops.clip(v, clip[0], clip[1])


def _project_l2(x, v, eps, clip):
    delta = v - x
    norm = _l2_norm(delta)
    return clip_to(x + delta / (norm + _DLR_EPS) * ops.minimum(eps, norm),
                   clip)


def _random_start(rng, shape, eps, norm):
    """The reference's start: uniform in the L-inf ball rescaled to touch its
    surface, or a Gaussian direction on the L2 sphere."""
    if norm == "infinity":
        t = 2.0 * rng.random(shape, dtype=np.float32) - 1.0
        t /= np.abs(t.reshape(shape[0], -1)).max(axis=1).reshape(
            (-1,) + (1,) * (len(shape) - 1)) + 1e-12
    else:
        t = rng.standard_normal(shape, dtype=np.float32)
        t /= np.sqrt((t.reshape(shape[0], -1) ** 2).sum(axis=1)).reshape(
            (-1,) + (1,) * (len(shape) - 1)) + 1e-12
    return (eps * t).astype(np.float32)


def checkpoints(steps):
    """The APGD checkpoint schedule: `(n_iter_2, n_iter_min, size_decr)`;
    the first checkpoint comes after `n_iter_2` iterations, each next one
    `size_decr` iterations sooner, never sooner than `n_iter_min`."""
    return (max(int(0.22 * steps), 1), max(int(0.06 * steps), 1),
            max(int(0.03 * steps), 1))


def _apgd_run(scorer, x, y, loss_fn, eps, norm, steps, rho, clip, start,
              on_step, real):
    """One APGD run on a batch (tensors `x`, `y`) whose first `real` rows
    count (see `run_batches`); `loss_fn(scores, y)` is maximised. Returns
    NumPy `(x_best_adv, fooled)`."""
    ndim = len(x.shape)
    x_adv = clip_to(x + ops.convert_to_tensor(start), clip)
    scores, loss, grad = scorer.scores_and_gradient(
        x_adv, lambda s: loss_fn(s, y))
    fooled = ops.argmax(scores, axis=-1) != y
    x_best_adv = x_adv
    x_best, grad_best, loss_best = x_adv, grad, loss
    step = ops.full((x.shape[0],) + (1,) * (ndim - 1), 2.0 * eps,
                    dtype=x.dtype)
    x_old = x_adv
    n_iter_2, n_iter_min, size_decr = checkpoints(steps)
    k, counter = n_iter_2, 0
    loss_best_last = loss_best
    reduced_last = ops.ones_like(fooled)
    history = []  # Loss at each iterate.
    for i in range(steps):
        momentum = x_adv - x_old
        x_old = x_adv
        a = 0.75 if i > 0 else 1.0
        if norm == "infinity":
            z = x_adv + step * ops.sign(grad)
            z = clip_to(ops.clip(z, x - eps, x + eps), clip)
            z = x_adv + (z - x_adv) * a + momentum * (1 - a)
            z = clip_to(ops.clip(z, x - eps, x + eps), clip)
        else:
            z = x_adv + step * grad / (_l2_norm(grad) + _DLR_EPS)
            z = _project_l2(x, z, eps, clip)
            z = x_adv + (z - x_adv) * a + momentum * (1 - a)
            z = _project_l2(x, z, eps, clip)
        x_adv = z
        scores, loss, grad = scorer.scores_and_gradient(
            x_adv, lambda s: loss_fn(s, y))
        wrong = ops.argmax(scores, axis=-1) != y
        fooled = ops.logical_or(fooled, wrong)
        x_best_adv = ops.where(_per_example(wrong, ndim), x_adv, x_best_adv)
        history.append(loss)
        better = loss > loss_best
        x_best = ops.where(_per_example(better, ndim), x_adv, x_best)
        grad_best = ops.where(_per_example(better, ndim), grad, grad_best)
        loss_best = ops.where(better, loss, loss_best)
        on_step()
        counter += 1
        if counter == k:
            # Fraction of the last k steps that increased the loss (before
            # the first step, the reference reads an unwritten 0).
            increases = ops.zeros_like(loss)
            for j in range(i - k + 1, i + 1):
                previous = history[j - 1] if j >= 1 else ops.zeros_like(loss)
                increases = increases + ops.cast(history[j] > previous,
                                                 loss.dtype)
            oscillates = increases <= k * rho
            stalled = ops.logical_and(ops.logical_not(reduced_last),
                                      loss_best_last >= loss_best)
            reduce = ops.logical_or(oscillates, stalled)
            reduced_last = reduce
            loss_best_last = loss_best
            where = _per_example(reduce, ndim)
            step = ops.where(where, step / 2.0, step)
            x_adv = ops.where(where, x_best, x_adv)
            grad = ops.where(where, grad_best, grad)
            k = max(k - size_decr, n_iter_min)
            counter = 0
        if i % 10 == 9 and bool(ops.convert_to_numpy(
                ops.all(fooled[:real]))):
            on_step(steps - i - 1)
            break  # Every example is misclassified: nothing left to find.
    return (np.asarray(ops.convert_to_numpy(x_best_adv)),
            np.asarray(ops.convert_to_numpy(fooled)))


def check_common(attack, eps, norm, steps, restarts):
    """Validated `(eps, norm, steps, restarts)` of a gradient attack named
    `attack` (L-inf or L2)."""
    eps = _attacks._check_eps(eps)  # pylint: disable=protected-access
    norm = _attacks.canonical_norm(norm)
    if norm not in _NORMS:
        raise ValueError(f"{attack} supports the 'infinity' and 'l2' norms. "
                         f"Received: norm={norm!r}")
    steps = _core_validation.check_int("steps", steps, 1)
    restarts = _core_validation.check_int("restarts", restarts, 1)
    return eps, norm, steps, restarts


def _check_rho(rho):
    if not 0 < rho < 1:
        raise ValueError(f"`rho` must be in (0, 1). Received: rho={rho!r}")


def setup(model, x, y, clip, output, batch_size):
    x, clip = _validation.check_inputs(x, clip)
    batch_size = _validation.check_batch_size(batch_size)
    scorer = Scorer(model, output, x[:batch_size])
    y = _validation.check_labels(y, len(x), scorer.num_classes)
    return scorer, x, y, clip, batch_size


def begin(scorer, x, y, robust, batch_size):
    """What every attack starts from: `(clean scores, clean-correct mask,
    mask of the examples to attack (correct, and in `robust` if given), a
    copy of x for the adversarial examples)`."""
    clean = scorer.predict(x, batch_size)
    correct = np.argmax(clean, -1) == y
    still = correct.copy() if robust is None else (
        correct & np.asarray(robust, bool))
    return clean, correct, still, x.copy()


def ranked_targets(clean, n_target_classes):
    """The targets of APGD-T and FAB-T: for each round, the class each
    example ranks 2nd, 3rd, ... on the clean input."""
    ranked = np.argsort(-clean, axis=-1, kind="stable")
    return [ranked[:, r].astype(np.int32)
            for r in range(1, n_target_classes + 1)]


def run_batches(scorer, x, y, robust, attack_batch, batch_size):
    """Runs `attack_batch(x_b, y_b, idx, real) -> (adv_b, fooled_b)` on the
    examples still `robust`, in batches; updates `robust` in place and
    returns the adversarial examples of those it fooled `(idx, adv)`.

    Each batch is padded to `padded_size` rows by repeating its examples
    (`idx` lists the rows' examples, padding included); only its first
    `real` rows count, and the attack must not let the others change them
    (e.g. stop early only when the first `real` are all fooled)."""
    todo = np.flatnonzero(robust)
    found_idx, found_adv = [], []
    for start in range(0, len(todo), batch_size):
        idx = todo[start:start + batch_size]
        padded = np.resize(idx, padded_size(len(idx), batch_size))
        adv, fooled = attack_batch(x[padded], y[padded], padded, len(idx))
        # Count only what the model actually misclassifies at the returned
        # point (guards against a fooled flag on a different evaluation).
        fooled &= (np.argmax(scorer.predict(adv, batch_size), -1)
                   != y[padded])
        adv, fooled = adv[:len(idx)], fooled[:len(idx)]
        robust[idx[fooled]] = False
        found_idx.append(idx[fooled])
        found_adv.append(adv[fooled])
    if found_idx:
        return np.concatenate(found_idx), np.concatenate(found_adv)
    return np.zeros(0, int), x[:0]


def batches_of(n, batch_size):
    return math.ceil(n / batch_size) if n else 0


def finish(name, x_adv, robust, correct, scorer, started):
    """The `AttackResult` of an attack that began at `started`
    (`time.perf_counter()`)."""
    return AttackResult(
        name=name, x_adv=x_adv, robust=robust,
        accuracy=float(robust.mean()), clean_accuracy=float(correct.mean()),
        evaluations=scorer.evaluations,
        seconds=time.perf_counter() - started)


def run_round(scorer, x, y, robust, x_adv, attack_batch, batch_size, *, bar,
              initial, per_batch, skip=False):
    """One round of an attack (a restart, or a target class): runs
    `attack_batch` (see `run_batches`) on the examples still `robust` and
    stores what it found in `x_adv`, both in place. The progress `bar`,
    sized for `initial` batches of `per_batch` steps, is first credited with
    the steps of the batches no longer needed (examples fooled earlier), and
    with the whole round when nothing is left or `skip` (eps 0)."""
    planned = batches_of(int(robust.sum()), batch_size)
    bar.update((initial - planned) * per_batch)
    if skip or planned == 0:
        bar.update(planned * per_batch)
        return
    idx, adv = run_batches(scorer, x, y, robust, attack_batch, batch_size)
    x_adv[idx] = adv


def _attack(model, x, y, *, name, eps, norm, steps, restarts, rho, clip,
            output, batch_size, seed, progress, loss, n_target_classes,
            robust=None):
    eps, norm, steps, restarts = check_common("APGD", eps, norm, steps,
                                              restarts)
    _check_rho(rho)
    scorer, x, y, clip, batch_size = setup(model, x, y, clip, output,
                                            batch_size)
    started = time.perf_counter()
    clean, correct, robust, x_adv = begin(scorer, x, y, robust, batch_size)
    rng = np.random.default_rng(seed)
    targeted = loss == "dlr-targeted"
    if targeted:
        if scorer.num_classes < 4:
            raise ValueError(
                "APGD-T's targeted DLR loss needs >= 4 classes. Received a "
                f"model with {scorer.num_classes} classes.")
        n_target_classes = min(_core_validation.check_int(
            "n_target_classes", n_target_classes, 1), scorer.num_classes - 1)
        rounds = ranked_targets(clean, n_target_classes)
    else:
        rounds = [None]
    base = {"ce": ce_loss, "dlr": dlr_loss}.get(loss)
    initial = batches_of(int(robust.sum()), batch_size)
    total = len(rounds) * restarts * steps * initial
    with _progress.progress_bar(total=total, desc=name, unit="step",
                                unit_scale=False, enabled=progress) as bar:
        for targets in rounds:
            for _ in range(restarts):

                def attack_batch(xb, yb, idx, real, targets=targets):
                    if targets is None:
                        fn = base
                    else:
                        t = ops.convert_to_tensor(targets[idx])

                        def fn(s, labels):
                            return dlr_targeted_loss(s, labels, t)
                    start = _random_start(rng, xb.shape, eps, norm)
                    return _apgd_run(
                        scorer, ops.convert_to_tensor(xb),
                        ops.convert_to_tensor(yb), fn, eps, norm, steps, rho,
                        clip, start, bar.update, real)

                run_round(scorer, x, y, robust, x_adv, attack_batch,
                          batch_size, bar=bar, initial=initial,
                          per_batch=steps, skip=eps == 0)
    return finish(name, x_adv, robust, correct, scorer, started)


def apgd(model, x, y, eps, norm="infinity", *, loss="ce", steps=100,
         restarts=1, rho=0.75, clip=None, output="auto", batch_size=256,
         seed=0, progress=None, robust=None):
    """Untargeted Auto-PGD (Croce and Hein, 2020) with the CE or DLR loss.

    PGD with momentum 0.75 and a step size that needs no tuning: it starts
    at `2 eps` and is halved for an example at a checkpoint when, since the
    last checkpoint, fewer than `rho` of the steps increased its loss, or
    its best loss did not improve (and the step was not halved at the last
    checkpoint); the iterate then restarts from the best point found.
    Checkpoints come after 22% of `steps`, then each 3% of `steps` sooner,
    never sooner than 6% (`checkpoints`). Each restart starts from a random
    point of the ball (drawn with NumPy from `seed`, the same on every
    backend) and attacks only the examples still classified correctly.

    Args:
        model: a Keras model (or callable) returning logits or
            probabilities `(batch, C)` (see `detect_output_kind`; on
            probabilities the losses use log-probabilities: the CE loss is
            the same, and DLR, being shift-invariant, too).
        x: float array `(n, ...)`.
        y: int labels `(n,)` or one-hot `(n, C)`.
        eps: radius of the ball.
        norm: 'infinity' (or 'linf') or 'l2'.
        loss: 'ce' (APGD-CE) or 'dlr' (APGD-DLR).
        steps: iterations per restart (100 in AutoAttack).
        restarts: random restarts.
        rho: the oscillation threshold of the step-size rule (0.75).
        clip: optional `(min, max)` of the valid input range.
        output: 'auto', 'logits' or 'probabilities'.
        batch_size: examples per batch.
        seed: seed of the random starts.
        progress: show a progress bar of the iterations (tqdm, stderr);
            None: only when stderr is a terminal.
        robust: optional bool array `(n,)`: attack only these examples
            (those False count as not robust), as an ensemble does.

    Returns:
        An `AttackResult`.
    """
    if loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {LOSSES}. Received: "
                         f"loss={loss!r}")
    name = (f"APGD-{loss.upper()} "
            f"{_attacks.NORM_LABELS[_attacks.canonical_norm(norm)]}"
            if _attacks.canonical_norm(norm) in _NORMS else "APGD")
    return _attack(model, x, y, name=f"{name} eps={eps:g}", eps=eps,
                   norm=norm, steps=steps, restarts=restarts, rho=rho,
                   clip=clip, output=output, batch_size=batch_size,
                   seed=seed, progress=progress, loss=loss,
                   n_target_classes=None, robust=robust)


def apgd_targeted(model, x, y, eps, norm="infinity", *, n_target_classes=9,
                  steps=100, restarts=1, rho=0.75, clip=None, output="auto",
                  batch_size=256, seed=0, progress=None, robust=None):
    """Targeted Auto-PGD with the targeted DLR loss (APGD-T).

    For each of the `n_target_classes` classes ranked 2nd, 3rd, ... by the
    model on the clean input, runs `apgd` (same schedule) maximising

        -(s_y - s_t) / (s_(1) - (s_(3) + s_(4)) / 2)

    towards that target `t`, on the examples no earlier target fooled. Needs
    >= 4 classes; at most `C - 1` targets. Arguments as in `apgd`.

    Returns:
        An `AttackResult`.
    """
    norm_name = _attacks.canonical_norm(norm)
    label = _attacks.NORM_LABELS.get(norm_name, norm_name)
    return _attack(model, x, y, name=f"APGD-T {label} eps={eps:g}", eps=eps,
                   norm=norm, steps=steps, restarts=restarts, rho=rho,
                   clip=clip, output=output, batch_size=batch_size,
                   seed=seed, progress=progress, loss="dlr-targeted",
                   n_target_classes=n_target_classes, robust=robust)
