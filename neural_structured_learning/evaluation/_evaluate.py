"""Robust accuracy of a classifier under FGSM and PGD, white-box and transfer."""

import time
import warnings

import keras
import numpy as np
from keras import ops

from neural_structured_learning._core import progress as _progress
from neural_structured_learning.evaluation import _attacks
from neural_structured_learning.evaluation import _autoattack
from neural_structured_learning.evaluation import _checks
from neural_structured_learning.evaluation import _outputs
from neural_structured_learning.evaluation import _validation
from neural_structured_learning.lib import adversarial_neighbor

WHITE_BOX = "white-box"
COLUMNS = ("model", "source", "attack", "label", "norm", "eps", "steps",
           "step_size", "restarts", "random_init", "loss", "n", "accuracy",
           "output", "purpose", "check", "seconds", "grad_evals")


class _Classifier:
    """A model with its detected output kind: scores, predictions, attacks."""

    def __init__(self, model, name, output, sample):
        if not callable(model):
            raise TypeError(f"`{name}` must be a Keras model or a callable "
                            f"returning class scores. Received: "
                            f"{type(model).__name__}")
        self.model = model
        self.name = name
        self.grad_evals = 0
        self.on_grad_eval = None  # Called after each gradient evaluation.
        self.kind = _outputs.detect_output_kind(
            self._numpy_outputs(sample), output, model=model)

    def _call(self, x):
        if isinstance(self.model, keras.layers.Layer):
            return self.model(x, training=False)
        return self.model(x)

    def _numpy_outputs(self, x):
        if isinstance(self.model, keras.Model):
            outputs = self.model.predict_on_batch(x)
        else:
            outputs = self._call(ops.convert_to_tensor(x))
        if isinstance(outputs, (list, tuple, dict)):
            raise ValueError(
                f"`{self.name}` must have a single output of class scores. "
                f"Received {type(outputs).__name__} of {len(outputs)} "
                "outputs.")
        return np.asarray(ops.convert_to_numpy(outputs))

    def predict(self, x):
        """Predicted classes (int array) and the raw outputs of `x`."""
        outputs = self._numpy_outputs(x)
        scores = _outputs.log_scores(ops.convert_to_tensor(
            outputs.astype("float32")), self.kind)
        return np.argmax(ops.convert_to_numpy(scores), axis=-1), outputs

    def perturb(self, x, y, attack, clip, loss, seed):
        """Adversarial examples of `x` (NumPy) for labels `y`."""
        config = attack.adv_neighbor_config(clip)
        if config is None:
            return x
        labels = ops.convert_to_tensor(y)

        def objective(features):
            self.grad_evals += 1
            if self.on_grad_eval is not None:
                self.on_grad_eval()
            scores = _outputs.log_scores(self._call(features), self.kind)
            return _outputs.attack_loss(scores, labels, loss)

        adv, _ = adversarial_neighbor.gen_adv_neighbor(
            ops.convert_to_tensor(x), objective, config, seed=seed)
        return np.asarray(ops.convert_to_numpy(adv))


def _batches(n, batch_size):
    """Yields `(indices, valid)`: fixed-size index arrays (the last one
    wraps around to the start, so every batch has one shape) and the number
    of examples in it that count."""
    size = min(batch_size, n)
    for start in range(0, n, size):
        yield np.arange(start, start + size) % n, min(size, n - start)


def predict_classes(model, x, *, output="auto", batch_size=256):
    """The classes `model` predicts for `x` (int array `(n,)`), whether it
    outputs logits or probabilities (binary: one unit, threshold at logit
    0 / probability 0.5)."""
    x, _ = _validation.check_inputs(x, None)
    batch_size = _validation.check_batch_size(batch_size)
    classifier = _Classifier(model, "model", output, x[:batch_size])
    out = np.empty(len(x), dtype=np.int64)
    for idx, valid in _batches(len(x), batch_size):
        out[idx[:valid]] = classifier.predict(x[idx])[0][:valid]
    return out


def generate_adversarial(model, x, y, attack, *, clip=None, output="auto",
                         loss="crossentropy", batch_size=256, seed=0):
    """Adversarial examples of `x` against `model` under one `Attack`.

    With restarts, each example keeps the first restart that fools the
    model (else the last one).

    Args:
        model: a Keras model (or callable) returning logits or
            probabilities of shape `(batch, C)` (or `(batch,)` / `(batch, 1)`
            for a binary classifier).
        x: float array `(n, ...)` of inputs.
        y: int labels `(n,)` (or one-hot `(n, C)`).
        attack: an `Attack`.
        clip: optional `(min, max)` of the valid input range; the inputs
            must lie inside it.
        output: 'auto', 'logits' or 'probabilities' (see
            `detect_output_kind`).
        loss: 'crossentropy' or 'margin' (see `attack_loss`).
        batch_size: examples per batch.
        seed: seed of the random starts.

    Returns:
        A float32 array shaped like `x`.
    """
    if not isinstance(attack, _attacks.Attack):
        raise TypeError(f"`attack` must be an nsl.evaluation.Attack. "
                        f"Received: {type(attack).__name__}")
    x, clip = _validation.check_inputs(x, clip)
    batch_size = _validation.check_batch_size(batch_size)
    target = _Classifier(model, "model", output, x[:batch_size])
    y = _validation.check_labels(y, len(x), target.kind.num_classes)
    seeds = keras.random.SeedGenerator(seed)
    out = np.empty_like(x)
    for idx, valid in _batches(len(x), batch_size):
        x_b, y_b = x[idx], y[idx]
        best = np.array(x_b)
        fooled = np.zeros(len(idx), dtype=bool)
        for _ in range(attack.restarts):
            adv = target.perturb(x_b, y_b, attack, clip, loss, seeds)
            best[~fooled] = adv[~fooled]
            fooled |= target.predict(adv)[0] != y_b
            if fooled.all():
                break
        out[idx[:valid]] = best[:valid]
    return out


def _sanity_runs(attacks, clip, x):
    """Extra white-box runs for the sanity checks: a huge-eps attack per
    norm, and PGD with a quarter of the steps at the largest PGD eps."""
    if clip is not None:
        width = float(clip[1] - clip[0])
    else:
        width = float(np.max(x) - np.min(x)) or 1.0
    dim = int(np.prod(x.shape[1:]))
    runs = []
    for norm in dict.fromkeys(a.norm for a in attacks):
        # Large enough to reach any point of the clip box from any input.
        large = {"infinity": width, "l2": width * dim**0.5,
                 "l1": width * dim}[norm]
        runs.append((_attacks.Attack("pgd", eps=large, norm=norm, steps=10,
                                     random_init=False),
                     "sanity: large eps"))
        pgds = [a for a in attacks if a.norm == norm and a.method == "pgd"
                and a.eps > 0]
        if not pgds:
            continue
        eps = max(a.eps for a in pgds)
        at_eps = [a for a in pgds if a.eps == eps]
        strongest = max(at_eps, key=lambda a: a.steps)
        fewer = max(1, strongest.steps // 4)
        if strongest.steps > 1 and all(a.steps > fewer for a in at_eps):
            runs.append((strongest.replace(steps=fewer),
                         "sanity: fewer steps"))
    return runs


def _row(model_name, source, attack, loss, n, accuracy, kind, purpose,
         seconds, grad_evals):
    clean = attack is None
    return {
        "model": model_name, "source": "-" if clean else source,
        "attack": "clean" if clean else attack.method,
        "label": "clean" if clean else attack.label,
        "norm": None if clean else attack.norm,
        "eps": 0.0 if clean else attack.eps,
        "steps": 0 if clean else attack.steps,
        "step_size": 0.0 if clean else attack.alpha,
        "restarts": 0 if clean else attack.restarts,
        "random_init": False if clean else attack.random_init,
        "loss": None if clean else loss, "n": n,
        "accuracy": accuracy, "output": kind.name, "purpose": purpose,
        "check": "-", "seconds": round(seconds, 3),
        "grad_evals": grad_evals}


def evaluate_robustness(model, x, y, attacks=None, *, sources=None,
                        clip=None, output="auto", loss="crossentropy",
                        batch_size=256, seed=0, sanity_checks=True,
                        model_name="model", progress=None,
                        autoattack_eps=(), autoattack_norm="infinity",
                        autoattack_queries=5000, autoattack_steps=100):
    """Accuracy of `model` on `(x, y)`, clean and under each attack.

    Robust accuracy counts an example only if the model classifies it
    correctly both clean and at every restart of the attack:

        acc = (1/n) sum_i 1[f(x_i) = y_i and f(x_i^(r)) = y_i for all r]

    where `x_i^(r)` is restart `r` of the attack, crafted against the model
    itself (white-box) or against another model (`sources`, a transfer
    attack). The attack maximises the loss of the model's class
    distribution, whether it outputs logits or probabilities (detected; see
    `detect_output_kind`). PGD with `k` steps costs `k` forward-backward
    passes plus one forward pass per batch and restart.

    With `sanity_checks`, extra white-box runs are added (purpose 'sanity:
    ...': PGD-10 without random start at an eps that reaches any input, and
    PGD with a quarter of the steps at the largest PGD eps) and
    `sanity_checks` tests the table for signs of gradient masking. Each row's
    `check` says 'ok', 'FAIL: <why>' or '-' (not checked); failures also
    raise a `RobustnessWarning`.

    Args:
        model: a Keras model (or callable) returning logits or
            probabilities, `(batch, C)` or `(batch,)` / `(batch, 1)`.
        x: float array `(n, ...)` of inputs.
        y: int labels `(n,)` in `[0, C)`, or one-hot `(n, C)`.
        attacks: a list of `Attack`; default: FGSM and PGD-40 in the
            L-infinity norm at eps 0.1, 0.2 and 0.3 (images in [0, 1]).
        sources: optional dict `{name: model}` of models to craft transfer
            attacks on; every attack is also run against each of them.
        clip: optional `(min, max)` of the valid input range (e.g. `(0, 1)`
            for images): adversarial inputs are clipped to it, and `x` must
            lie inside it.
        output: 'auto', 'logits' or 'probabilities'; applies to `model` and
            `sources`.
        loss: the attack loss, 'crossentropy' or 'margin' (see
            `attack_loss`).
        batch_size: examples per batch.
        seed: seed of the random starts.
        sanity_checks: add the sanity runs and check the table.
        model_name: the `model` column of the rows.
        progress: show a progress bar (tqdm, on stderr) that advances with
            every attack step (forward-backward pass); None: only when
            stderr is a terminal.
        autoattack_eps: radii at which to add the standard ensemble
            (`autoattack`: APGD-CE, APGD-T, FAB-T, Square, each on the
            examples still correct; white-box), the field's standard for a
            robustness claim. Rows: one per attack (accuracy after it) and
            the worst case ('AutoAttack ...'), purpose 'autoattack'; the
            sanity checks then also flag a black-box Square beating the
            gradient attacks (gradient masking) and an ensemble weaker than
            PGD.
        autoattack_norm: 'infinity' or 'l2', the ensemble's norm.
        autoattack_queries: Square's query budget (5000 as published).
        autoattack_steps: iterations of APGD-CE, APGD-T and FAB-T (100 as
            published; fewer for a quick, weaker check).

    Returns:
        A list of dicts, one per row: the clean accuracy first, then each
        attack and source; keys are `COLUMNS` (`accuracy` in [0, 1], `output`
        the detected output kind, `seconds` the attack's wall time and
        `grad_evals` its forward-backward passes per batch). The clean row
        also has `notes`: what was detected and any warning about it.

    Raises:
        TypeError: if `attacks` holds something other than `Attack`.
        ValueError: for inconsistent shapes, labels out of range, inputs
            outside `clip`, outputs that contradict `output`, or a bad
            `loss` or `batch_size`.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> x_test = np.random.rand(32, 4).astype('float32')
    >>> y_test = np.random.randint(0, 3, size=32)
    >>> rows = nsl.evaluation.evaluate_robustness(
    ...     model, x_test, y_test,
    ...     nsl.evaluation.attack_grid([0.1, 0.3], steps=5), clip=(0, 1),
    ...     sanity_checks=False)
    >>> print(nsl.evaluation.to_markdown(rows, ['label', 'n', 'output'],
    ...                                  checks=False))
    | label | n | output |
    |---|---|---|
    | clean | 32 | logits |
    | FGSM Linf eps=0.1 | 32 | logits |
    | PGD-5 Linf eps=0.1 | 32 | logits |
    | FGSM Linf eps=0.3 | 32 | logits |
    | PGD-5 Linf eps=0.3 | 32 | logits |
    >>> all(row['accuracy'] <= rows[0]['accuracy'] for row in rows)
    True

    `print(nsl.evaluation.to_markdown(rows))` prints every column, the
    accuracies included.
    """
    attacks = _attacks.attack_grid((0.1, 0.2, 0.3)) if attacks is None else (
        _validation.check_attacks(attacks))
    if loss not in _outputs.LOSSES:
        raise ValueError(f"`loss` must be one of "
                         f"{', '.join(map(repr, _outputs.LOSSES))}. "
                         f"Received: loss={loss!r}")
    x, clip = _validation.check_inputs(x, clip)
    batch_size = _validation.check_batch_size(batch_size)
    sample = x[:batch_size]
    target = _Classifier(model, "model", output, sample)
    y = _validation.check_labels(y, len(x), target.kind.num_classes)
    attackers = {WHITE_BOX: target}
    for name, source in _validation.check_sources(sources).items():
        attackers[name] = _Classifier(source, f"sources[{name!r}]",
                                           output, sample)
        if attackers[name].kind.num_classes != target.kind.num_classes:
            raise ValueError(
                f"`sources[{name!r}]` has {attackers[name].kind.num_classes} "
                f"classes but `model` has {target.kind.num_classes}.")
    runs = [(a, name, "attack") for a in attacks for name in attackers]
    if sanity_checks:
        runs += [(a, WHITE_BOX, purpose)
                 for a, purpose in _sanity_runs(attacks, clip, x)]
    rows = _run(target, attackers, runs, x, y, clip, loss, batch_size, seed,
                model_name, progress)
    for eps in autoattack_eps or ():
        result = _autoattack.autoattack(
            model, x, y, eps, autoattack_norm, n_queries=autoattack_queries,
            steps=autoattack_steps, clip=clip, output=target.kind.kind, batch_size=batch_size,
            seed=seed, progress=progress)
        rows += result.rows(model_name, output=rows[0]["output"])
    if sanity_checks:
        _checks.mark_rows(rows, _checks.sanity_checks(rows), warn=True)
    return rows


def _survivors(target, attacker, attack, x_b, y_b, correct, clip, loss,
               seed):
    """Which examples of a batch the target still classifies correctly
    after every restart of `attack` crafted on `attacker` (bool array)."""
    still = correct.copy()
    for _ in range(attack.restarts):
        adv = attacker.perturb(x_b, y_b, attack, clip, loss, seed)
        still &= target.predict(adv)[0] == y_b
        if not still.any():
            break
    return still


def _output_notes(kind, saturated):
    """The detected output kind, and what the user should know about it."""
    notes = [f"output: {kind.describe()}", *kind.notes]
    if saturated > 0:
        notes.append(
            f"{saturated:.1%} of the examples have one-hot probabilities in "
            "float32 (a saturated softmax or sigmoid), whose gradients are "
            "zero: attack the model's logits instead if you can")
    for note in notes[1:]:
        warnings.warn(note, _checks.RobustnessWarning, stacklevel=4)
    return "; ".join(notes)


def _cost(attack):
    """Attack steps (gradient evaluations) of one run over one batch."""
    return attack.steps * attack.restarts


class _StepProgress:
    """Advances `bar` by one per gradient evaluation of `attacker`, up to
    `cost`; on exit, by what is left of `cost` (restarts that stopped early
    because every example was fooled)."""

    def __init__(self, bar, attacker, cost):
        self.bar, self.attacker, self.cost, self.done = bar, attacker, cost, 0

    def _step(self):
        if self.done < self.cost:
            self.done += 1
            self.bar.update(1)

    def __enter__(self):
        self.attacker.on_grad_eval = self._step
        return self

    def __exit__(self, *exc_info):
        self.attacker.on_grad_eval = None
        if self.done < self.cost:
            self.bar.update(self.cost - self.done)
            self.done = self.cost
        return False


def _run(target, attackers, runs, x, y, clip, loss, batch_size, seed,
         model_name, progress):
    n = len(x)
    robust = np.zeros(len(runs), dtype=np.int64)
    seconds = np.zeros(len(runs))
    grad_evals = np.zeros(len(runs), dtype=np.int64)
    seeds = [keras.random.SeedGenerator(seed + 7919 * i)
             for i in range(len(runs))]
    clean_correct, saturated, n_batches = 0, 0.0, 0
    # The bar counts attack steps (forward-backward passes), so it moves
    # within a batch too: a PGD-40 run over one batch is 40 steps.
    costs = [_cost(attack) for attack, _, _ in runs]
    bar = _progress.progress_bar(
        total=-(-n // min(batch_size, n)) * sum(costs),
        desc=f"{model_name}: {len(runs)} attacks", unit="step",
        enabled=progress, unit_scale=False)
    for idx, valid in _batches(n, batch_size):
        n_batches += 1
        x_b, y_b = x[idx], y[idx]
        pred, outputs = target.predict(x_b)
        _outputs.check_batch(outputs, target.kind, n_batches)
        saturated += _outputs.saturation(outputs[:valid], target.kind) * valid
        correct = pred == y_b
        clean_correct += int(correct[:valid].sum())
        for i, (attack, source, _) in enumerate(runs):
            start, attacker = time.perf_counter(), attackers[source]
            evals_before = attacker.grad_evals
            with _StepProgress(bar, attacker, costs[i]):
                still = _survivors(target, attacker, attack, x_b, y_b,
                                   correct, clip, loss, seeds[i])
            robust[i] += int(still[:valid].sum())
            seconds[i] += time.perf_counter() - start
            grad_evals[i] += attacker.grad_evals - evals_before
    bar.close()
    rows = [dict(_row(model_name, "-", None, loss, n, clean_correct / n,
                      target.kind, "clean", 0.0, 0),
                 notes=_output_notes(target.kind, saturated / n))]
    for i, (attack, source, purpose) in enumerate(runs):
        rows.append(_row(model_name, source, attack, loss, n, robust[i] / n,
                         target.kind, purpose, seconds[i],
                         round(float(grad_evals[i]) / n_batches, 2)))
    return rows
