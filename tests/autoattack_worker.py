"""Runs APGD-CE, APGD-T, FAB-T and Square on a digits MLP under one Keras backend.

Usage: autoattack_worker.py WEIGHTS.npz OUTPUT.npz [--torchattacks]

WEIGHTS.npz holds the MLP's weights (`w0`, `b0`, `w1`, `b1`, input shape
`(1, 8, 8)`, channels first) and the examples `x`, `y`, and `runs`, one line
per run: 'attack norm eps steps_or_queries seed [targets]' (attack:
apgd-ce, apgd-t, fab-t, square, or autoattack: our ensemble, 'standard' with APGD and FAB-T
at that many steps and Square at 5000 queries, vs the same ensemble built
from torchattacks' attacks, `standard_ensemble`; `targets`: target
classes of our APGD-T and FAB-T, default 9).
For each run the output has
`ours/<run>` (robust flags of our attack) and, with `--torchattacks` (PyTorch
backend only), `torchattacks/<run>` from the same model.
"""

import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # pylint: disable=wrong-import-position

from neural_structured_learning.evaluation import (
    _apgd,  # pylint: disable=wrong-import-position
    _autoattack,  # pylint: disable=wrong-import-position
    _fab,  # pylint: disable=wrong-import-position
    _square,  # pylint: disable=wrong-import-position
)


def make_inputs(path, n, runs):
    """Trains the digits MLP (scikit-learn, offline data) and writes
    WEIGHTS.npz with `n` held-out examples and `runs`."""
    from sklearn import (
        datasets,  # pylint: disable=import-outside-toplevel
        neural_network,  # pylint: disable=import-outside-toplevel
    )
    digits = datasets.load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    import warnings  # pylint: disable=import-outside-toplevel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        clf = neural_network.MLPClassifier(
            hidden_layer_sizes=(64,), max_iter=300, random_state=0).fit(
                x[:1200], y[:1200])
    np.savez(path, w0=clf.coefs_[0].astype("float32"),
             b0=clf.intercepts_[0].astype("float32"),
             w1=clf.coefs_[1].astype("float32"),
             b1=clf.intercepts_[1].astype("float32"),
             x=x[1200:1200 + n].reshape(-1, 1, 8, 8), y=y[1200:1200 + n],
             runs=np.array(runs))


def run(backend, weights, output, *extra):
    """Runs this script under `backend`; returns its output arrays."""
    import subprocess  # pylint: disable=import-outside-toplevel
    env = dict(os.environ, KERAS_BACKEND=backend, OMP_NUM_THREADS="1",
               TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), weights, output, *extra],
        env=env, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-4000:])
    with np.load(output) as data:
        return {k: data[k] for k in data.files if k != "backend"}


def build(weights):
    model = keras.Sequential([
        keras.Input((1, 8, 8)), keras.layers.Flatten(),
        keras.layers.Dense(weights["w0"].shape[1], activation="relu"),
        keras.layers.Dense(weights["w1"].shape[1])])
    model.layers[1].set_weights([weights["w0"], weights["b0"]])
    model.layers[2].set_weights([weights["w1"], weights["b1"]])
    return model


def ours(model, x, y, attack, norm, eps, budget, seed, targets=9):
    common = {"clip": (0.0, 1.0), "seed": seed, "progress": False,
              "batch_size": 500}
    targeted = {"n_target_classes": targets}
    if attack == "apgd-ce":
        return _apgd.apgd(model, x, y, eps, norm, steps=budget,
                          **common).robust
    if attack == "apgd-t":
        return _apgd.apgd_targeted(model, x, y, eps, norm, steps=budget,
                                   **targeted, **common).robust
    if attack == "fab-t":
        return _fab.fab_targeted(model, x, y, eps, norm, steps=budget,
                                 **targeted, **common).robust
    if attack == "autoattack":
        return _autoattack.autoattack(
            model, x, y, eps, norm, steps=budget,
            data_format="channels_first", **common).robust
    return _square.square(model, x, y, eps, norm, n_queries=budget,
                          data_format="channels_first", **common).robust


def torchattacks_attack(model, attack, norm, eps, budget, seed,
                        n_classes=10):
    """torchattacks' counterpart of our `attack` ('apgd-ce', 'apgd-t',
    'fab-t', 'square', or 'autoattack': `standard_ensemble`); `norm`:
    'infinity' or 'l2'; `budget`: iterations, or Square's queries."""
    import torchattacks  # pylint: disable=import-outside-toplevel
    name = {"infinity": "Linf", "l2": "L2"}[norm]
    common = {"norm": name, "eps": eps, "n_restarts": 1, "seed": seed}
    if attack == "apgd-ce":
        return torchattacks.APGD(model, steps=budget, loss="ce", **common)
    if attack == "apgd-t":
        return torchattacks.APGDT(model, steps=budget, n_classes=n_classes,
                                  **common)
    if attack == "fab-t":
        return torchattacks.FAB(model, steps=budget, multi_targeted=True,
                                n_classes=n_classes, **common)
    if attack == "autoattack":
        return standard_ensemble(model, norm, eps, budget, seed, n_classes)
    return torchattacks.Square(model, n_queries=budget, **common)


def standard_ensemble(model, norm, eps, steps, seed, n_classes=10):
    """AutoAttack's 'standard' ensemble from torchattacks' attacks, at the
    published budget (`steps` iterations, Square 5000 queries).
    (torchattacks' own `AutoAttack(version='standard')` leaves APGD, APGD-T
    and FAB at their default 10 steps, not AutoAttack's 100, and is
    weaker.) `norm`: 'infinity' or 'l2'."""
    import torchattacks  # pylint: disable=import-outside-toplevel
    return torchattacks.MultiAttack(
        [torchattacks_attack(model, a, norm, eps, steps, seed, n_classes)
         for a in ("apgd-ce", "apgd-t", "fab-t")]
        + [torchattacks_attack(model, "square", norm, eps, 5000, seed)])


def torchattacks_robust(model, att, x, y):
    """Robust flags (NumPy) of a torchattacks attack on tensors `x`, `y`:
    correct on `x` and on the attack's output."""
    import torch  # pylint: disable=import-outside-toplevel
    adv = att(x, y)
    with torch.no_grad():
        return (model(adv).argmax(1) == y).cpu().numpy() & (
            model(x).argmax(1) == y).cpu().numpy()


def reference(model, x, y, attack, norm, eps, budget, seed):
    import torch  # pylint: disable=import-outside-toplevel
    att = torchattacks_attack(model, attack, norm, eps, budget, seed)
    return torchattacks_robust(model, att, torch.tensor(x),
                               torch.tensor(y).long())


def main(argv):
    data = np.load(argv[1])
    model = build(data)
    x, y = data["x"], data["y"]
    out = {"backend": np.array(keras.config.backend())}
    for line in data["runs"]:
        attack, norm, eps, budget, seed, *targets = str(line).split()
        args = (model, x, y, attack, norm, float(eps), int(budget), int(seed))
        out["ours/" + str(line)] = ours(*args, *map(int, targets))
        if "--torchattacks" in argv:
            out["torchattacks/" + str(line)] = reference(*args)
    np.savez(argv[2], **out)


if __name__ == "__main__":
    main(sys.argv)
