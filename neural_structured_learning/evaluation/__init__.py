"""Robustness evaluation: accuracy under FGSM and PGD, with sanity checks.

    rows = nsl.evaluation.evaluate_robustness(
        model, x_test, y_test, nsl.evaluation.attack_grid([0.1, 0.2, 0.3]),
        clip=(0.0, 1.0), sources={"base": base_model})
    print(nsl.evaluation.to_markdown(rows))

Also on the command line: `nsl evaluate model.keras data.npz` (see
`nsl evaluate --help`).

Names are imported on first use, so importing this package (and the `nsl`
command line) does not import Keras.
"""

import importlib

_EXPORTS = {
    "Attack": "_attacks",
    "OutputKind": "_outputs",
    "RobustnessWarning": "_checks",
    "attack_grid": "_attacks",
    "attack_loss": "_outputs",
    "detect_output_kind": "_outputs",
    "evaluate_robustness": "_evaluate",
    "fgsm": "_attacks",
    "generate_adversarial": "_evaluate",
    "mark_rows": "_checks",
    "pgd": "_attacks",
    "plot_accuracy_vs_eps": "_report",
    "predict_classes": "_evaluate",
    "plot_adversarial_examples": "_report",
    "sanity_checks": "_checks",
    "to_markdown": "_report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
