"""Tests for _autoattack.py: the ensemble attacks only still-correct examples
and reports per-attack (cumulative) and worst-case robust accuracy."""

import keras
import numpy as np
import pytest

from neural_structured_learning.evaluation import (
    _apgd,
    _apgd_test,
    _attacks,
    _autoattack,
    _evaluate,
)
from neural_structured_learning.evaluation import _report as report

SMALL = {"steps": 30, "n_target_classes": 3, "n_queries": 200,
         "progress": False}


def test_worst_case_over_attacks_on_still_correct_examples():
    model, x, y = _apgd_test.mlp()
    eps = 0.08
    result = _autoattack.autoattack(model, x, y, eps, clip=(0.0, 1.0),
                                    **SMALL)
    n = len(x)
    assert [a["attack"] for a in result.attacks] == [
        "apgd-ce", "apgd-t", "fab-t", "square"]
    # The first attack runs on every clean-correct example: it is the
    # standalone APGD-CE (same seed).
    alone = _apgd.apgd(model, x, y, eps, clip=(0.0, 1.0), steps=30,
                       progress=False)
    assert result.attacks[0]["accuracy"] == alone.accuracy
    assert result.attacks[0]["attacked"] == round(result.clean_accuracy * n)
    for before, after in zip(result.attacks, result.attacks[1:]):
        assert after["attacked"] == round(before["accuracy"] * n)
        assert after["accuracy"] == pytest.approx(
            before["accuracy"] - after["fooled"] / n)
    assert result.robust_accuracy == result.attacks[-1]["accuracy"]
    assert result.robust_accuracy == result.robust.mean()
    assert sum(a["fooled"] for a in result.attacks) == round(
        (result.clean_accuracy - result.robust_accuracy) * n)
    # Worst case <= PGD-40 (measured: 0.267 PGD, 0.242 ensemble).
    pgd_adv = _evaluate.generate_adversarial(
        model, x, y, _attacks.pgd(eps, steps=40), clip=(0.0, 1.0))
    pgd_acc = np.mean((np.argmax(model.predict_on_batch(x), -1) == y) & (
        np.argmax(model.predict_on_batch(pgd_adv), -1) == y))
    assert 0.1 < result.robust_accuracy <= min(pgd_acc, alone.accuracy)
    # Adversarial examples: in the ball and the box, misclassified; the
    # others are the inputs.
    assert np.abs(result.x_adv - x).max() <= eps + 1e-6
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    predicted = np.argmax(model.predict_on_batch(result.x_adv), -1)
    clean = np.argmax(model.predict_on_batch(x), -1) == y
    broken = clean & ~result.robust
    assert np.all(predicted[broken] != y[broken])
    np.testing.assert_array_equal(result.x_adv[result.robust],
                                  x[result.robust])


def test_rows_use_the_evaluate_robustness_columns():
    model, x, y = _apgd_test.mlp()
    result = _autoattack.autoattack(model, x[:40], y[:40], 0.05, "l2",
                                    clip=(0.0, 1.0), attacks=[
                                        "apgd-ce", "apgd-t"], **SMALL)
    assert [a["attack"] for a in result.attacks] == ["apgd-ce", "apgd-t"]
    rows = result.rows("mlp", output="logits")
    assert all(tuple(r) == _evaluate.COLUMNS for r in rows)
    assert [(r["attack"], r["purpose"]) for r in rows] == [
        ("apgd-ce", "autoattack"), ("apgd-t", "autoattack"),
        ("autoattack", "autoattack")]
    assert rows[-1]["label"] == "AutoAttack L2 eps=0.05"
    assert rows[-1]["accuracy"] == result.robust_accuracy
    assert rows[-1]["model"] == "mlp" and rows[-1]["norm"] == "l2"
    # The table and its FGSM/PGD sanity checks accept the rows.
    table = report.to_markdown(rows)
    assert "AutoAttack L2 eps=0.05" in table


def test_skips_apgd_t_below_four_classes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5)).astype("float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    y = np.argmax(model.predict_on_batch(x), -1)
    result = _autoattack.autoattack(model, x, y, 0.1, **SMALL)
    assert [a["attack"] for a in result.attacks] == [
        "apgd-ce", "fab-t", "square"]
    assert any("apgd-t skipped" in note for note in result.notes)
    with pytest.raises(ValueError, match="at least 5 x 5"):
        _autoattack.autoattack(model, x, y, 0.1, "l2")
    with pytest.raises(ValueError, match="attacks"):
        _autoattack.autoattack(model, x, y, 0.1, attacks=["fgsm"])
