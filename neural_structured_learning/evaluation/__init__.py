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

from neural_structured_learning._core import lazy

__all__ = [
    "Attack",
    "AttackResult",
    "AutoAttackResult",
    "OutputKind",
    "RobustnessWarning",
    "apgd",
    "apgd_targeted",
    "attack_grid",
    "attack_loss",
    "autoattack",
    "detect_output_kind",
    "evaluate_robustness",
    "fab_targeted",
    "fgsm",
    "generate_adversarial",
    "mark_rows",
    "pgd",
    "plot_accuracy_vs_eps",
    "plot_adversarial_examples",
    "predict_classes",
    "sanity_checks",
    "square",
    "to_markdown",
]

__getattr__, __dir__ = lazy.exports(__name__, {
    "Attack": "_attacks",
    "AttackResult": "_apgd",
    "AutoAttackResult": "_autoattack",
    "OutputKind": "_outputs",
    "RobustnessWarning": "_checks",
    "apgd": "_apgd",
    "apgd_targeted": "_apgd",
    "attack_grid": "_attacks",
    "autoattack": "_autoattack",
    "attack_loss": "_outputs",
    "detect_output_kind": "_outputs",
    "evaluate_robustness": "_evaluate",
    "fab_targeted": "_fab",
    "fgsm": "_attacks",
    "generate_adversarial": "_evaluate",
    "mark_rows": "_checks",
    "pgd": "_attacks",
    "plot_accuracy_vs_eps": "_report",
    "plot_adversarial_examples": "_report",
    "predict_classes": "_evaluate",
    "sanity_checks": "_checks",
    "square": "_square",
    "to_markdown": "_report",
})
