"""Our APGD-CE, APGD-T, FAB-T and Square agree across TensorFlow, JAX and PyTorch.

The digits MLP of `autoattack_worker.py` (scikit-learn weights, 200
held-out examples) is attacked under each backend in a subprocess; the
robust accuracies must agree within 0.5 points. Random draws come from NumPy,
so the backends start from the same points (measured: the same examples
are fooled on every backend).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import autoattack_worker  # pylint: disable=wrong-import-position

pytest.importorskip("sklearn")

BACKENDS = ("tensorflow", "jax", "torch")
POINTS = 0.005  # 0.5 percentage points.
BACKEND_RUNS = ["apgd-ce infinity 0.1 50 0", "apgd-t infinity 0.1 10 0 3",
                "apgd-ce l2 0.5 30 0", "square infinity 0.1 200 0",
                "square l2 1.0 100 0", "fab-t infinity 0.1 20 0 3",
                "fab-t l2 0.5 20 0 3"]  # APGD-T, FAB-T: 3 target classes (time).


def test_backends_agree(tmp_path):
    weights = str(tmp_path / "weights.npz")
    autoattack_worker.make_inputs(weights, 200, BACKEND_RUNS)
    results = {b: autoattack_worker.run(b, weights,
                                        str(tmp_path / f"{b}.npz"))
               for b in BACKENDS}
    failures = []
    for run in BACKEND_RUNS:
        accuracy = {b: results[b]["ours/" + run].mean() for b in BACKENDS}
        assert 0.2 < accuracy["torch"] < 0.9
        differ = sum(int((results[b]["ours/" + run]
                          != results["torch"]["ours/" + run]).sum())
                     for b in BACKENDS)
        if max(accuracy.values()) - min(accuracy.values()) > POINTS + 1e-9:
            failures.append(f"{run}: {accuracy} ({differ} example flags "
                            "differ from PyTorch's)")
    assert not failures, "\n".join(failures)
