"""Cross-backend agreement: TensorFlow, JAX and PyTorch (and NSL 1.4).

`cross_backend_worker.py` computes adversarial losses, neighbours, evaluate
metrics and one SGD training step of an MLP, a CNN and an MLP with
BatchNormalization, on fixed weights and inputs, under FGSM and PGD configs.
This test runs it once per backend in a subprocess and requires every pair of
backends to agree to 1e-5. With `NSL14_PYTHON` pointing at a Python that has
`neural-structured-learning==1.4.0` and `tensorflow-cpu==2.15.1`, the same
script also runs under NSL 1.4 and its results must agree to 1e-5 too.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "cross_backend_worker.py")
BACKENDS = ("tensorflow", "jax", "torch")
TOLERANCE = dict(rtol=1e-5, atol=1e-5)
# VAT's power iteration differentiates a KL of order xi^2: at xi = 1e-3 its
# direction carries float32 rounding (measured: 1.2e-4 relative between
# backends; at xi = 1e-6 the loss differs by 18% between backends: the
# direction is mostly rounding noise). Stated tolerance:
LOOSE = {"vat_xi=0.001/loss": dict(rtol=1e-3, atol=1e-6)}
# The module's tests share one `results` fixture (three backend subprocesses,
# about 45 s): under pytest-xdist they must run in one worker, or each worker
# computes it again (scripts/test.sh runs tests/ with --dist loadscope).


def _run(python, output, extra_env=None, extra_args=()):
    env = dict(os.environ, **(extra_env or {}))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    result = subprocess.run([python, WORKER, output, *extra_args], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    with np.load(output) as data:
        return {k: data[k] for k in data.files if k != "backend"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cross_backend")
    return {b: _run(sys.executable, str(folder / f"{b}.npz"),
                    {"KERAS_BACKEND": b}) for b in BACKENDS}


def _compare(a, b, keys):
    failures = []
    for key in keys:
        if not np.allclose(a[key], b[key], **LOOSE.get(key, TOLERANCE)):
            failures.append(
                f"{key}: max abs diff "
                f"{np.max(np.abs(a[key] - b[key])):.3g}")
    return failures


@pytest.mark.parametrize("pair", [("tensorflow", "jax"),
                                  ("tensorflow", "torch"),
                                  ("jax", "torch")])
def test_backends_agree(results, pair):
    a, b = (results[name] for name in pair)
    assert sorted(a) == sorted(b)
    assert len(a) > 110  # 4 models x 4 configs x (neighbour, metrics, weights)
    failures = _compare(a, b, sorted(a))
    assert not failures, "\n".join(failures)


def test_training_step_changed_the_weights(results):
    # Guards against comparing trivially equal (untrained) weights.
    tf_results = results["tensorflow"]
    assert tf_results["mlp/fgsm_l2/eval_scaled_adversarial_loss"] > 0
    neighbor = tf_results["cnn/pgd_inf_clip/neighbor"]
    assert 0 <= neighbor.min() and neighbor.max() <= 1


NSL14_PYTHON = os.environ.get("NSL14_PYTHON")


@pytest.mark.skipif(
    not NSL14_PYTHON,
    reason="NSL 1.4 comparison NOT RUN: set NSL14_PYTHON to a Python with "
           "neural-structured-learning==1.4.0 and tensorflow-cpu==2.15.1 "
           "(scripts/test.sh builds one in .venv-nsl14)")
def test_agrees_with_nsl_1_4(results, tmp_path):
    old = _run(NSL14_PYTHON, str(tmp_path / "nsl14.npz"),
               extra_args=("--nsl14",))
    ours = results["tensorflow"]
    # NSL 1.4 ran extra BatchNorm updates on PGD's inner passes; ours
    # discard them by design, so BN moving statistics differ there.
    keys = [k for k in old if not (k.startswith("bn_mlp/pgd") and (
        "weight" in k or "eval" in k))]
    assert len(keys) > 90
    failures = _compare(ours, old, keys)
    assert not failures, "\n".join(failures)
