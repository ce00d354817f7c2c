"""Tests for _cli.py: `nsl evaluate` round trips on tiny saved models."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from neural_structured_learning import cli


@keras.saving.register_keras_serializable(package="nsl_evaluation_test")
class _Quantized(keras.layers.Layer):
    """Rounds to multiples of 1/4: a zero gradient (gradient masking)."""

    def call(self, x):
        return ops.round(x * 4.0) / 4.0


def _save(tmp_path, masked=False):
    """A softmax classifier of 4x4 images, and 8-bit test data."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(16, 3)).astype(np.float32)
    layers = [keras.Input((4, 4, 1))] + ([_Quantized()] if masked else []) + [
        keras.layers.Flatten(), keras.layers.Dense(3, "softmax")]
    model = keras.Sequential(layers)
    model.layers[-1].set_weights([weights, np.zeros(3, np.float32)])
    images = rng.integers(0, 256, (30, 4, 4), dtype=np.uint8)
    labels = np.argmax(model.predict(images[..., None] / 255.0, verbose=0),
                       axis=-1)
    paths = str(tmp_path / "model.keras"), str(tmp_path / "data.npz")
    model.save(paths[0])
    np.savez(paths[1], x_test=images, y_test=labels)
    return paths


def test_round_trip(tmp_path, capsys):
    model, data = _save(tmp_path)
    out = str(tmp_path / "rows.json")
    status = cli.main(["evaluate", model, data, "--divide_by=255",
                       "--eps=0.05,0.2", "--steps=3", "--json", out,
                       "--plot_dir", str(tmp_path / "plots"),
                       "--noprogress"])
    assert status == 0
    table = capsys.readouterr().out
    assert table.startswith("| model | source | label | accuracy |")
    assert "| model.keras | - | clean | 1.0000 | 30 | probabilities |" in (
        table)
    assert "Sanity checks (gradient masking):" in table
    with open(out, encoding="utf-8") as f:
        rows = json.load(f)
    assert [r["label"] for r in rows if r["purpose"] == "attack"] == [
        "FGSM Linf eps=0.05", "PGD-3 Linf eps=0.05", "FGSM Linf eps=0.2",
        "PGD-3 Linf eps=0.2"]
    assert rows[0]["notes"].startswith("output: probabilities (")
    for name in ("accuracy_vs_eps.png", "examples.png"):
        with open(tmp_path / "plots" / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_strict_fails_on_a_masked_model(tmp_path, capsys):
    model, data = _save(tmp_path, masked=True)
    status = cli.main(["evaluate", model, data, "--divide_by=255",
                       "--eps=0.1", "--attacks=fgsm", "--strict"])
    assert status == 3
    captured = capsys.readouterr()
    assert "**FAIL**" in captured.out
    assert ("nsl evaluate: warning: Sanity check 'large_eps' failed: "
            "PGD-10 Linf eps=1 (reaches any input in range) accuracy "
            "1.0000 > 0.05") in captured.err


@pytest.mark.parametrize("args, message", [
    ([], r"`x` has \d+ values outside the clip range \[0, 1\] declared by "
     r"`clip`: min 0, max 25[0-9]. .* rescale `x` \(e.g. x / 255"),
    (["--divide_by=255", "--x_key=images"],
     r"The data file '.*data.npz' has keys \['x_test', 'y_test'\]: "
     r"expected 'x' and 'y', or 'x_test' and 'y_test' \(or name them with "
     r"--x_key and --y_key\)."),
    (["--divide_by=255", "--output=logits"],
     r"`output='logits'` but the model's outputs are probabilities"),
])
def test_errors(tmp_path, capsys, args, message):
    model, data = _save(tmp_path)
    assert cli.main(["evaluate", model, data, "--attacks=fgsm"] + args) == 1
    err = capsys.readouterr().err
    assert err.startswith("nsl evaluate: error: ")
    assert __import__("re").search(message, err), err


def test_usage_errors(tmp_path, capsys):
    model, data = _save(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", model, data, "--eps=0.1,x"])
    assert exit_info.value.code == 2
    assert ("--eps must be comma-separated numbers. Received: '0.1,x'"
            in capsys.readouterr().err)


def test_help_does_not_import_keras():
    code = ("import sys\nfrom neural_structured_learning import cli\n"
            "try:\n    cli.main(['evaluate', '--help'])\n"
            "except SystemExit:\n    pass\n"
            "print('KERAS' if 'keras' in sys.modules else 'NO KERAS')\n")
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, check=True, env=env)
    assert "--transfer_from" in result.stdout
    assert result.stdout.rstrip().endswith("NO KERAS")


def test_progress_bar_moves_per_attack_step(tmp_path, monkeypatch, capsys):
    # 30 examples fit one batch: a bar counting batches went 0% -> 100%.
    # pylint: disable-next=import-outside-toplevel
    from neural_structured_learning.evaluation import _evaluate
    bars = []

    class Bar:
        def __init__(self, total, enabled, **kwargs):
            del kwargs
            self.total, self.enabled, self.updates = total, enabled, []
            bars.append(self)

        def update(self, n=1):
            self.updates.append(n)

        def close(self):
            pass

    monkeypatch.setattr(_evaluate._progress, "progress_bar", Bar)
    model, data = _save(tmp_path)
    assert cli.main(["evaluate", model, data, "--divide_by=255", "--eps=0.1",
                     "--steps=4", "--nosanity_checks", "--progress"]) == 0
    capsys.readouterr()
    bar, = bars
    assert bar.enabled is True and bar.total == 1 + 4
    assert sum(bar.updates) == 5 and len(bar.updates) >= 4


@pytest.mark.parametrize("masked", [False, True])
def test_autoattack_flags_square_beating_zero_gradients(tmp_path, capsys,
                                                        masked):
    model, data = _save(tmp_path, masked=masked)
    out = str(tmp_path / "rows.json")
    status = cli.main(["evaluate", model, data, "--divide_by=255",
                       "--eps=0.2", "--steps=3", "--autoattack_eps=0.2",
                       "--autoattack_queries=300", "--autoattack_steps=20",
                       "--strict", "--json", out,
                       "--noprogress"])
    capsys.readouterr()
    with open(out, encoding="utf-8") as f:
        rows = json.load(f)
    ensemble = {r["attack"]: r for r in rows if r["purpose"] == "autoattack"}
    assert set(ensemble) == {"apgd-ce", "fab-t", "square", "autoattack"}
    pgd = [r for r in rows if r["label"] == "PGD-3 Linf eps=0.2"][0]
    assert ensemble["autoattack"]["accuracy"] <= pgd["accuracy"] + 1 / 30
    if masked:
        # Zero gradients: APGD fools next to nothing (its random start
        # alone), the black-box Square far more.
        assert ensemble["apgd-ce"]["accuracy"] >= 0.9
        assert (ensemble["square"]["accuracy"]
                < ensemble["apgd-ce"]["accuracy"] - 0.1)
        assert ensemble["square"]["check"].startswith("FAIL")
        assert status == 3
    else:
        assert ensemble["square"]["check"] == "ok"
