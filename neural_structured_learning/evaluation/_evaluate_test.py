"""Tests for _evaluate.py: known answers on linear models, gradient-masked
models that the sanity checks must catch, and bad inputs."""

import keras
import numpy as np
import pytest
from keras import ops

from neural_structured_learning.evaluation import _attacks
from neural_structured_learning.evaluation import _checks
from neural_structured_learning.evaluation import _evaluate

# A linear 2-class model: margin of class 1 over class 0 is x.w + c with
# w = (1, -2), c = 0.1; ||w||_1 = 3, ||w||_2 = sqrt(5) = 2.2361.
W = np.array([[0.0, 1.0], [0.0, -2.0]], np.float32)
B = np.array([0.0, 0.1], np.float32)
# Margins of the true class (2y - 1)(x.w + c): 0.05, 0.26, 0.5, -0.2.
X4 = np.array([[0.45, 0.25], [0.36, 0.10], [0.20, 0.40], [0.30, 0.30]],
              np.float32)
Y4 = np.array([1, 1, 0, 1])
# Every test uses 60 examples of 2 features: JAX compiles each operation
# once per shape, so one shape keeps the tests fast.
X, Y = np.tile(X4, (15, 1)), np.tile(Y4, 15)
EPS = 0.1
# Robust iff margin > eps * ||w||_dual: L-inf needs > 0.3 (only example 2),
# L2 needs > 0.2236 (examples 1 and 2); example 3 is wrong when clean.
CLEAN, LINF, L2 = 0.75, 0.25, 0.5
# FGSM/PGD optimum, L-inf: x - (2y - 1) * eps * sign(w).
X_LINF = X - (2 * Y[:, None] - 1) * EPS * np.array([1.0, -1.0])


def _linear(kind="logits"):
    if kind in ("logits", "probabilities"):
        layer = keras.layers.Dense(
            2, "softmax" if kind == "probabilities" else None)
        weights = [W, B]
    else:  # One unit: the class-1 margin, as a logit or a sigmoid.
        layer = keras.layers.Dense(1, "sigmoid" if kind == "sigmoid"
                                   else None)
        weights = [W[:, 1:] - W[:, :1], B[1:] - B[:1]]
    model = keras.Sequential([keras.Input((2,)), layer])
    layer.set_weights(weights)
    return model


def _accuracies(rows):
    return {(r["source"], r["label"]): r["accuracy"] for r in rows
            if r["purpose"] in ("clean", "attack")}


@pytest.mark.parametrize("kind, output", [
    ("logits", "logits"), ("probabilities", "probabilities"),
    ("logit", "binary logit"), ("sigmoid", "binary probability")])
def test_linear_model_known_accuracies(kind, output):
    attacks = [_attacks.fgsm(EPS), _attacks.pgd(EPS, steps=4),
               _attacks.fgsm(EPS, "l2"), _attacks.pgd(EPS, "l2", steps=4)]
    rows = _evaluate.evaluate_robustness(_linear(kind), X, Y, attacks,
                                         clip=(0.0, 1.0),
                                         sanity_checks=kind == "logits")
    assert _accuracies(rows) == {
        ("-", "clean"): CLEAN,
        ("white-box", "FGSM Linf eps=0.1"): LINF,
        ("white-box", "PGD-4 Linf eps=0.1"): LINF,
        ("white-box", "FGSM L2 eps=0.1"): L2,
        ("white-box", "PGD-4 L2 eps=0.1"): L2}
    assert {r["output"] for r in rows} == {output}
    assert rows[0]["notes"].startswith(f"output: {output} (")
    assert all(r["check"] in ("ok", "-") for r in rows), rows
    grad_evals = {r["label"]: r["grad_evals"] for r in rows}
    assert grad_evals["FGSM Linf eps=0.1"] == 1
    assert grad_evals["PGD-4 L2 eps=0.1"] == 4


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_linear_model_adversarial_points(method):
    attack = (_attacks.fgsm(EPS) if method == "fgsm"
              else _attacks.pgd(EPS, steps=4))
    for loss in ("crossentropy", "margin"):
        adv = _evaluate.generate_adversarial(_linear(), X, Y, attack,
                                             clip=(0.0, 1.0), loss=loss)
        np.testing.assert_allclose(adv, X_LINF, atol=1e-6)
    # L2 FGSM: x - (2y - 1) * eps * w / ||w||_2.
    adv = _evaluate.generate_adversarial(_linear("sigmoid"), X, Y,
                                         _attacks.fgsm(EPS, "l2"))
    step = EPS * np.array([1.0, -2.0]) / np.sqrt(5.0)
    np.testing.assert_allclose(adv, X - (2 * Y[:, None] - 1) * step,
                               atol=1e-6)


def test_transfer_attack_and_restarts():
    # Crafted on w_s = (1, 1): the L-inf step -(2y - 1) * eps * (1, 1)
    # changes the target's margin by -eps * (1 - 2) = +eps for y = 1 (and
    # y = 0 alike), so no example falls: transfer accuracy = clean accuracy.
    source = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    source.layers[0].set_weights([np.array([[0, 1], [0, 1]], np.float32),
                                  B])
    attacks = [_attacks.fgsm(EPS), _attacks.pgd(EPS, steps=5, restarts=3)]
    rows = _evaluate.evaluate_robustness(
        _linear(), X4, Y4, attacks, sources={"s": source}, clip=(0.0, 1.0),
        batch_size=3, sanity_checks=False)
    assert _accuracies(rows) == {
        ("-", "clean"): CLEAN,
        ("white-box", "FGSM Linf eps=0.1"): LINF,
        ("s", "FGSM Linf eps=0.1"): CLEAN,
        ("white-box", "PGD-5 Linf eps=0.1 x3"): LINF,
        ("s", "PGD-5 Linf eps=0.1 x3"): CLEAN}
    # 2 batches: examples 0-2, then 3 (wrapped to 3, 0, 1). White-box:
    # example 2 survives, so batch 1 runs 3 restarts x 5 steps; batch 2
    # stops after one restart. Transfer: nothing falls, so both batches run
    # all restarts. Per batch: (15 + 5) / 2 and (15 + 15) / 2.
    pgd = [r for r in rows if r["label"] == "PGD-5 Linf eps=0.1 x3"]
    assert [r["grad_evals"] for r in pgd] == [10.0, 15.0]
    assert all(f["status"] == "pass" for f in _checks.sanity_checks(rows))


def test_predict_classes():
    for kind in ("logits", "probabilities", "logit", "sigmoid"):
        np.testing.assert_array_equal(
            _evaluate.predict_classes(_linear(kind), X, batch_size=45),
            np.tile([1, 1, 0, 0], 15))


# -- Gradient-masked models: the sanity checks must fire. -----------------


class _Quantized(keras.layers.Layer):
    """Rounds its input to multiples of 1/4: the gradient is 0 everywhere."""

    def call(self, x):
        return ops.round(x * 4.0) / 4.0


class _Trap(keras.layers.Layer):
    """A deceptive gradient: for u = x[:, 0] - 0.5, the class-1 margin
    d(u) = 0.2 - u + 2 relu(u - 0.1) - 5 relu(u - 0.2) has a local minimum
    (d = 0.1 > 0) at u = 0.1, where PGD gets stuck, while one FGSM step to
    u = 0.3 lands at d = -0.2."""

    def call(self, x):
        u = x[:, :1] - 0.5
        d = 0.2 - u + 2.0 * ops.relu(u - 0.1) - 5.0 * ops.relu(u - 0.2)
        return ops.concatenate([ops.zeros_like(d), d], axis=-1)


def _findings(rows):
    """{(check, label of each row involved...): status}."""
    return {(f["check"], *(rows[i]["label"] for i in f["rows"])): f["status"]
            for f in _checks.sanity_checks(rows)}


def test_zero_gradients_fail_large_eps_and_transfer_checks():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (60, 2)).astype(np.float32)
    twin = _linear()
    masked = keras.Sequential([keras.Input((2,)), _Quantized(), twin])
    y = _evaluate.predict_classes(masked, x)
    with pytest.warns(_checks.RobustnessWarning):
        rows = _evaluate.evaluate_robustness(
            masked, x, y, [_attacks.fgsm(0.3), _attacks.pgd(0.3, steps=4)],
            sources={"twin": twin}, clip=(0.0, 1.0))
    accuracy = _accuracies(rows)
    assert accuracy[("white-box", "FGSM Linf eps=0.3")] == 1.0  # No move.
    assert accuracy[("twin", "FGSM Linf eps=0.3")] < 0.7
    findings = _findings(rows)
    assert findings[("large_eps", "PGD-10 Linf eps=1")] == "FAIL"
    assert findings[("white_box_vs_transfer", "FGSM Linf eps=0.3",
                     "FGSM Linf eps=0.3")] == "FAIL"
    large = [r for r in rows if r["purpose"] == "sanity: large eps"][0]
    assert large["accuracy"] == 1.0
    assert large["check"].startswith(
        "FAIL: PGD-10 Linf eps=1 (reaches any input in range) accuracy "
        "1.0000 > 0.05: ")


def test_deceptive_gradient_fails_pgd_and_steps_checks():
    x = np.full((60, 2), 0.5, np.float32)
    y = np.ones(60, np.int64)
    model = keras.Sequential([keras.Input((2,)), _Trap()])
    attacks = [_attacks.fgsm(0.3), _attacks.pgd(0.3, steps=1),
               _attacks.pgd(0.3, steps=20)]
    with pytest.warns(_checks.RobustnessWarning) as record:
        rows = _evaluate.evaluate_robustness(model, x, y, attacks,
                                             clip=(0.0, 1.0), output="logits")
    assert {str(w.message).split("'")[1] for w in record
            if w.category is _checks.RobustnessWarning} == {
                "pgd_vs_fgsm", "more_steps"}
    accuracy = _accuracies(rows)
    assert accuracy[("white-box", "FGSM Linf eps=0.3")] == 0.0
    # PGD-1 (step 0.75) escapes only from random starts in (0.1, 0.2): ~1/6
    # robust; PGD-20 (step 0.0375) falls only from starts above 0.2: ~5/6.
    assert accuracy[("white-box", "PGD-1 Linf eps=0.3")] < 0.4
    assert accuracy[("white-box", "PGD-20 Linf eps=0.3")] > 0.6
    findings = _findings(rows)
    assert findings[("pgd_vs_fgsm", "PGD-20 Linf eps=0.3",
                     "FGSM Linf eps=0.3")] == "FAIL"
    assert findings[("more_steps", "PGD-20 Linf eps=0.3",
                     "PGD-1 Linf eps=0.3")] == "FAIL"
    assert findings[("large_eps", "PGD-10 Linf eps=1")] == "pass"


# -- Bad input. -------------------------------------------------------------


@pytest.mark.parametrize("x, y, kwargs, error, message", [
    (X, np.tile([1, 1, 2, 1], 15), {}, ValueError,
     r"`y` has 15 labels outside \[0, 2\) \(the model has 2 classes\): "
     r"\[2\]. Labels must be class indices"),
    (X, np.tile([1, -1, 0, 1], 15), {}, ValueError,
     r"labels outside \[0, 2\).*\[-1\]"),
    (X, np.tile([1, 0.5, 0, 1], 15), {}, ValueError,
     r"`y` must hold integer class indices. .* e.g. 0.5"),
    (X, Y[:3], {}, ValueError,
     r"`y` must hold one label per example of `x`: shape \(60,\) .* "
     r"Received shape \(3,\)"),
    (X * 255, Y, dict(clip=(0.0, 1.0)), ValueError,
     r"`x` has 120 values outside the clip range \[0, 1\] declared by "
     r"`clip`: min 25.5, max 114.75. .* rescale `x` \(e.g. x / 255"),
    (X, Y, dict(clip=(1.0, 0.0)), ValueError,
     r"`clip` must be a pair of finite numbers with min < max. Received: "
     r"clip=\(1.0, 0.0\)"),
    (X, Y, dict(output="probabilities"), ValueError,
     r"`output='probabilities'` but the model's outputs are not "
     r"probabilities"),
    (X, Y, dict(loss="hinge"), ValueError,
     r"`loss` must be one of 'crossentropy', 'margin'. Received: "
     r"loss='hinge'"),
    (X, Y, dict(batch_size=0), ValueError,
     r"`batch_size` must be an integer >= 1. Received: batch_size=0"),
    (X, Y, dict(attacks=[0.1]), TypeError,
     r"`attacks` must be a list of nsl.evaluation.Attack .* float: 0.1"),
    (np.array(["a", "b"]), Y, {}, TypeError,
     r"`x` must be a numeric array. Received dtype <U1"),
    (X, Y, dict(sources=[_linear]), TypeError,
     r"`sources` must be a dict \{name: model\}"),
])
def test_bad_input(x, y, kwargs, error, message):
    kwargs.setdefault("attacks", [_attacks.fgsm(EPS)])
    with pytest.raises(error, match=message):
        _evaluate.evaluate_robustness(_linear(), x, y, **kwargs)


def test_one_hot_labels_are_accepted():
    rows = _evaluate.evaluate_robustness(
        _linear(), X, np.eye(2)[Y], [_attacks.fgsm(EPS)],
        sanity_checks=False)
    assert [r["accuracy"] for r in rows] == [CLEAN, LINF]


class _RecordingBar:
    """Stands in for the tqdm bar: records its total and every update."""

    def __init__(self, total, **kwargs):
        del kwargs
        self.total, self.updates, self.closed = total, [], False

    def update(self, n=1):
        self.updates.append(n)

    def close(self):
        self.closed = True


def test_progress_bar_advances_per_attack_step(monkeypatch):
    bars = []

    def progress_bar(**kwargs):
        bars.append(_RecordingBar(**kwargs))
        return bars[-1]

    monkeypatch.setattr(_evaluate._progress, "progress_bar", progress_bar)
    attacks = [_attacks.fgsm(EPS), _attacks.pgd(EPS, steps=5),
               _attacks.pgd(EPS, steps=4, restarts=3)]
    # One batch (60 examples, batch 256): the bar used to count batches and
    # so jumped from 0% to 100% at the end.
    _evaluate.evaluate_robustness(_linear(), X, Y, attacks, clip=(0.0, 1.0),
                                  sanity_checks=False, progress=True)
    bar, = bars
    assert bar.total == 1 + 5 + 4 * 3
    assert sum(bar.updates) == bar.total and bar.closed
    # Step by step: at least one update per step of the first restart.
    assert len(bar.updates) >= 1 + 5 + 4
    assert max(bar.updates) <= 4 * 2  # At most the restarts cut short.
    # Several batches and a transfer source: per step within each batch.
    bars.clear()
    _evaluate.evaluate_robustness(_linear(), X, Y, attacks[:2],
                                  sources={"other": _linear()},
                                  clip=(0.0, 1.0), batch_size=20,
                                  sanity_checks=False, progress=True)
    bar, = bars
    assert bar.total == 3 * 2 * (1 + 5)
    assert bar.updates == [1] * bar.total


def test_autoattack_rows_reach_the_linear_optimum_and_are_checked():
    rows = _evaluate.evaluate_robustness(
        _linear(), X, Y, [_attacks.pgd(EPS, steps=4)], clip=(0.0, 1.0),
        autoattack_eps=[EPS], autoattack_queries=50, batch_size=60)
    ensemble = [r for r in rows if r["purpose"] == "autoattack"]
    # APGD-T needs 4 classes (skipped here); APGD-CE, FAB-T, Square, worst
    # case.
    assert [r["attack"] for r in ensemble] == ["apgd-ce", "fab-t", "square",
                                               "autoattack"]
    worst = ensemble[-1]
    assert worst["label"] == "AutoAttack Linf eps=0.1"
    assert worst["accuracy"] == LINF  # The closed-form optimum.
    assert {r["output"] for r in ensemble} == {"logits"}
    checks = {f["check"]: f["status"]
              for f in _checks.sanity_checks(rows)}
    assert checks["autoattack_vs_pgd"] == "pass"
    assert worst["check"] == "ok"
