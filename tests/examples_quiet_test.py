"""Examples and benchmarks run quietly and fail early (issue 16).

Each check runs a script in a subprocess with tiny settings, as a user
would: no framework log lines on stderr by default, an install hint (not a
traceback) when an optional dependency is missing, prerequisites (data,
trained models, the NSL 1.4 interpreter) checked before any long work, and
reports that say how many seeds they are over. About 30 s in all.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from neural_structured_learning import _quiet as quiet

REPO = pathlib.Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def _run(args, tmp_path, env=None, timeout=300):
    """Runs `python args...` in `tmp_path`; returns the CompletedProcess."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("TF_CPP_MIN_LOG_LEVEL", "NSL_DATA_DIR")}
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    full_env.update(env or {})
    return subprocess.run([PYTHON, *map(str, args)], cwd=tmp_path,
                          env=full_env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _log_lines(stderr):
    return [line for line in stderr.splitlines()
            if quiet.hidden_line(line + "\n", level=1)]


def test_hidden_line_follows_tf_cpp_min_log_level():
    info = ("I0000 00:00:1795667439.598180     709 port.cc:153] oneDNN "
            "custom operations are on.\n")
    warning = "W0000 00:00:17.5  12 x.cc:3] careful\n"
    notice = ("WARNING: All log messages before absl::InitializeLog() is "
              "called are written to STDERR\n")
    assert not any(quiet.hidden_line(l, level=0)
                   for l in (info, warning, notice))
    assert quiet.hidden_line(info, 1) and quiet.hidden_line(notice, 1)
    assert not quiet.hidden_line(warning, 1) and quiet.hidden_line(warning, 2)
    assert not quiet.hidden_line("UserWarning: something\n", 3)
    assert not quiet.hidden_line("Traceback (most recent call last):\n", 3)


def test_example_is_quiet_and_degrades_without_matplotlib(tmp_path):
    # A matplotlib that cannot be imported, first on the path.
    fake = tmp_path / "no_matplotlib" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ImportError('No module named matplotlib')\n")
    done = _run([REPO / "examples" / "vat_two_rings.py", "--epochs", "1",
                 "--unlabeled", "50", "--test", "50"], tmp_path,
                env={"PYTHONPATH": os.pathsep.join(
                    [str(fake.parent), str(REPO)]),
                     "KERAS_BACKEND": "tensorflow"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| VAT |" in done.stdout  # The table, then no traceback:
    assert "Plots need matplotlib: pip install matplotlib" in done.stderr
    assert "[examples]" in done.stderr
    assert "Traceback" not in done.stderr
    assert _log_lines(done.stderr) == [], done.stderr
    # Only the hint is on stderr: no framework log lines, no warnings.
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert (tmp_path / "out" / "vat_two_rings"
            / "results_tensorflow_seed0.json").exists()


@pytest.mark.parametrize("level, expected", [
    ("2", "keep me\n"), ("0", "I0000 00:00:1.5  7 a.cc:1] info\nkeep me\n")])
def test_filtered_stderr_hides_only_log_lines_below_the_level(
        tmp_path, level, expected):
    code = ("import os\nfrom neural_structured_learning import _quiet as quiet\n"
            "with quiet.filtered_stderr():\n"
            "    os.write(2, b'I0000 00:00:1.5  7 a.cc:1] info\\nkeep me\\n')\n")
    done = _run(["-c", code], tmp_path, env={"TF_CPP_MIN_LOG_LEVEL": level},
                timeout=60)
    assert done.returncode == 0 and done.stderr == expected, done.stderr


def test_step_benchmark_checks_nsl14_before_measuring(tmp_path):
    # --require_nsl14: an error at once, before any backend runs.
    done = _run([REPO / "benchmarks" / "adversarial_step_benchmark.py",
                 "--nsl14_python", ".venv-nsl14/bin/python",
                 "--require_nsl14"], tmp_path, timeout=60)
    assert done.returncode == 2
    assert ".venv-nsl14/bin/python is not an executable file" in done.stderr
    assert "running" not in done.stderr
    # Without it: a warning first, then the measurements without NSL 1.4.
    broken = tmp_path / "python14"
    broken.write_text("#!/bin/sh\necho 'No module named tensorflow' >&2\n"
                      "exit 1\n")
    broken.chmod(0o755)
    done = _run([REPO / "benchmarks" / "adversarial_step_benchmark.py",
                 "--backends", "tensorflow", "--models", "mlp", "--variants",
                 "base", "--steps", "2", "--epochs", "1", "--rounds", "1",
                 "--nsl14_python", broken], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    warning = done.stderr.index("WARNING: no NSL 1.4 baseline")
    assert "cannot import NSL 1.4 and TensorFlow: No module named" in (
        done.stderr)
    assert warning < done.stderr.index("running tensorflow")
    assert "| tensorflow | mlp |" in done.stdout
    assert "No NSL 1.4 rows" in done.stdout


def test_graph_reg_report_only_counts_the_seeds_present(tmp_path):
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in [
        dict(task="tutorial", max_neighbors=0, seed=0, test_accuracy=0.78,
             backend="tensorflow"),
        dict(task="tutorial", max_neighbors=1, seed=0, test_accuracy=0.81,
             backend="tensorflow")]))
    script = REPO / "benchmarks" / "graph_reg_benchmark.py"
    done = _run([script, "--report_only", "--records", records, "--seeds",
                 "5", "--tasks", "tutorial"], tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "5 seeds" not in done.stdout and "± 0.00" not in done.stdout
    assert "Test accuracy (%), one seed (no spread):" in done.stdout
    assert "| base MLP | 78.00 (1 seed) |" in done.stdout
    assert "WARNING: --seeds 5, but 2 of 2 accuracy cells have fewer " in (
        done.stderr)
    # Two seeds in one cell, one in another: counts in brackets.
    with records.open("a") as f:
        f.write(json.dumps(dict(task="tutorial", max_neighbors=0, seed=1,
                                test_accuracy=0.80,
                                backend="tensorflow")) + "\n")
    done = _run([script, "--report_only", "--records", records, "--seeds",
                 "2", "--tasks", "tutorial"], tmp_path, timeout=60)
    assert "between 1 and 2; counts in brackets" in done.stdout
    assert "| base MLP | 79.00 ± 1.00 (2 seeds) |" in done.stdout
    assert "1 of 2 accuracy cells" in done.stderr


@pytest.mark.parametrize("args, message", [
    (["robustness_benchmark.py", "evaluate", "--data_dir", "missing"],
     "mnist is not in the data directory 'missing'"),
    (["robustness_benchmark.py", "train"], "No data directory"),
    (["robustness_ablations.py", "--data_dir", "{data}"],
     "out/robustness/models/mnist_base.keras is missing: run"),
    (["vat_benchmark.py", "--seeds", "--mnist100"],
     "--mnist100 needs"),
    (["adversarial_mnist_benchmark.py"], "no MNIST at"),
    (["graph_reg_benchmark.py", "--data_dir", "missing"],
     "the data directory 'missing' does not exist"),
])
def test_benchmarks_check_prerequisites_first(tmp_path, args, message):
    data = tmp_path / "data" / "mnist"
    data.mkdir(parents=True)
    (data / "mnist.npz").write_bytes(b"")
    args = [a.replace("{data}", str(tmp_path / "data")) for a in args]
    done = _run([REPO / "benchmarks" / args[0], *args[1:]], tmp_path,
                timeout=60)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert _log_lines(done.stderr) == []  # Failed before TensorFlow loaded.


def test_step_benchmark_worker_is_quiet(tmp_path):
    # Ten models, each tracing its training function once: TensorFlow's
    # retracing detector used to warn about them (a false alarm).
    done = _run([REPO / "benchmarks" / "adversarial_step_benchmark.py",
                 "--worker", "--steps", "2", "--epochs", "1", "--rounds",
                 "1", "--models", "mlp", "cnn", "--variants", "base", "fgsm",
                 "pgd3", "vat", "fgsm_unfused"], tmp_path,
                env={"KERAS_BACKEND": "tensorflow"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""
    assert len(json.loads(done.stdout)) == 10
