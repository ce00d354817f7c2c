"""Tests for _report.py."""

import numpy as np
import pytest

from neural_structured_learning.evaluation import _report


def _rows():
    def row(attack, label, accuracy, eps, source="white-box", check="ok",
            purpose="attack"):
        return {"model": "m", "source": source, "attack": attack,
                "label": label, "norm": "infinity", "eps": eps,
                "steps": 1 if attack == "fgsm" else 40, "restarts": 1,
                "random_init": attack == "pgd", "loss": "crossentropy",
                "n": 100, "accuracy": accuracy, "output": "logits",
                "purpose": purpose, "check": check, "seconds": 1.5,
                "grad_evals": 1}
    clean = dict(row("clean", "clean", 0.99, 0.0, "-", "-", "clean"),
                 norm=None, notes="output: logits (...)")
    return [clean, row("fgsm", "FGSM Linf eps=0.1", 0.5, 0.1),
            row("pgd", "PGD-40 Linf eps=0.1", 0.6, 0.1, check="FAIL: x"),
            row("pgd", "PGD-40 Linf eps=0.1", 0.7, 0.1, source="base"),
            row("pgd", "PGD-10 Linf eps=1", 0.0, 1.0,
                purpose="sanity: large eps")]


def test_to_markdown():
    text = _report.to_markdown(_rows(), ["model", "label", "accuracy",
                                         "check", "seconds"])
    lines = text.splitlines()
    assert lines[:4] == ["| model | label | accuracy | check | seconds |",
                         "|---|---|---|---|---|",
                         "| m | clean | 0.9900 | - | 1.5 |",
                         "| m | FGSM Linf eps=0.1 | 0.5000 | ok | 1.5 |"]
    assert lines[4] == "| m | PGD-40 Linf eps=0.1 | 0.6000 | **FAIL** | 1.5 |"
    assert ("- [FAIL] pgd_vs_fgsm: PGD-40 Linf eps=0.1 accuracy 0.6000 > "
            "FGSM Linf eps=0.1 accuracy 0.5000: ") in text
    assert "Notes (m): output: logits (...)" in text
    assert "Sanity" not in _report.to_markdown(_rows(), checks=False)


def test_plots_write_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = _report.plot_accuracy_vs_eps(_rows(), str(tmp_path / "a.png"),
                                        title="t")
    x = np.random.default_rng(0).random((3, 5, 5, 1))
    grid = _report.plot_adversarial_examples(
        str(tmp_path / "b.png"), x, [0, 1, 2], x[::-1], {"m": [0, 2, 2]},
        clip=(0, 1), class_names=["a", "b", "c"])
    for name in (path, grid):
        with open(name, "rb") as f:
            assert f.read(4) == b"\x89PNG"
    with pytest.raises(ValueError, match="`rows` has no attack rows"):
        _report.plot_accuracy_vs_eps(_rows()[:1], str(tmp_path / "c.png"))
