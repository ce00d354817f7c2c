"""AutoAttack's ensemble: APGD-CE, APGD-T, FAB-T and Square, worst case per
example (Croce and Hein, 2020, https://arxiv.org/abs/2003.01690).

Each attack runs only on the examples that every earlier attack failed on,
so the final robust accuracy is the worst case over the ensemble, per
example, at the cost of running the later (expensive) attacks on few
examples.
"""

import dataclasses
import time

import numpy as np

from neural_structured_learning.evaluation import _apgd
from neural_structured_learning.evaluation import _attacks
from neural_structured_learning.evaluation import _fab
from neural_structured_learning.evaluation import _square
from neural_structured_learning.evaluation import _validation

ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square")
# AutoAttack's 'standard' version, in its order.
STANDARD = {"infinity": ("apgd-ce", "apgd-t", "fab-t", "square"),
            "l2": ("apgd-ce", "apgd-t", "fab-t", "square")}
_NAMES = {"apgd-ce": "APGD-CE", "apgd-dlr": "APGD-DLR", "apgd-t": "APGD-T",
          "fab-t": "FAB-T", "square": "Square"}


@dataclasses.dataclass
class AutoAttackResult:
    """The outcome of `autoattack`.

    Attributes:
        eps: the radius.
        norm: 'infinity' or 'l2'.
        n: number of examples.
        clean_accuracy: accuracy on the clean inputs.
        robust_accuracy: worst-case robust accuracy: the fraction of
            examples classified correctly clean and under every attack.
        attacks: one dict per attack, in order: `attack` (e.g. 'apgd-ce'),
            `label`, `accuracy` (robust accuracy after this and the
            earlier attacks), `fooled` (examples this attack fooled that
            the earlier ones had not), `attacked` (examples it ran on),
            `seconds`, `evaluations` (model evaluations, one per batch).
        x_adv: float32 array shaped like `x`: the adversarial example that
            fooled the model (the first attack's), else the input.
        robust: bool array `(n,)`: robust under every attack.
        notes: what was skipped, and why.
    """

    eps: float
    norm: str
    n: int
    clean_accuracy: float
    robust_accuracy: float
    attacks: list
    x_adv: np.ndarray
    robust: np.ndarray
    notes: tuple = ()

    @property
    def label(self):
        """e.g. 'AutoAttack Linf eps=0.3'."""
        return f"AutoAttack {_attacks.NORM_LABELS[self.norm]} eps={self.eps:g}"

    def rows(self, model_name="model", output=None):
        """Rows in the format of `evaluate_robustness` (its `COLUMNS`), all
        with purpose 'autoattack' (which the FGSM/PGD sanity checks and
        plots leave alone): one per attack (`accuracy` after that attack in
        the sequence), then the worst case (attack 'autoattack', `steps`
        0). `output` fills the `output` column."""
        rows = []
        for a in self.attacks:
            rows.append(self._row(model_name, a["attack"], a["label"],
                                  a["accuracy"], "autoattack", a["seconds"],
                                  a["evaluations"], a["steps"],
                                  a["restarts"], a["loss"], output))
        rows.append(self._row(
            model_name, "autoattack", self.label, self.robust_accuracy,
            "autoattack", sum(a["seconds"] for a in self.attacks),
            sum(a["evaluations"] for a in self.attacks), 0, 0,
            "worst case", output))
        return rows

    def _row(self, model_name, attack, label, accuracy, purpose, seconds,
             evaluations, steps, restarts, loss, output):
        return {"model": model_name, "source": "white-box", "attack": attack,
                "label": label, "norm": self.norm, "eps": self.eps,
                "steps": steps, "step_size": 0.0, "restarts": restarts,
                "random_init": True, "loss": loss, "n": self.n,
                "accuracy": accuracy, "output": output, "purpose": purpose,
                "check": "-", "seconds": round(seconds, 3),
                "grad_evals": evaluations}


def autoattack(model, x, y, eps, norm="infinity", *, attacks=None,
               steps=100, restarts=1, n_target_classes=9, n_queries=5000,
               clip=None, output="auto", data_format=None, batch_size=256,
               seed=0, progress=None):
    """Worst-case robust accuracy under an AutoAttack-style ensemble.

    Runs `attacks` in order, each only on the examples still classified
    correctly (clean and under every earlier attack); an example is robust
    if no attack fooled it. The default is AutoAttack's 'standard' version:
    APGD-CE (`apgd`, 100 steps), APGD-T (`apgd_targeted`, 9 target classes
    x 100 steps), FAB-T (`fab_targeted`, 9 target classes x 100 steps) and
    Square (`square`, 5000 queries; in L2 it needs images of >= 5 x 5
    pixels).

    Args:
        model: a Keras model (or callable) returning logits or
            probabilities.
        x: float array `(n, ...)`.
        y: int labels `(n,)` or one-hot `(n, C)`.
        eps: radius of the ball.
        norm: 'infinity' (or 'linf') or 'l2'.
        attacks: names among 'apgd-ce', 'apgd-dlr', 'apgd-t', 'fab-t',
            'square' (default `STANDARD[norm]`). APGD-T is skipped for
            fewer than 4 classes (noted in `notes`).
        steps: APGD and FAB-T iterations per restart.
        restarts: APGD and FAB-T restarts (per target class for APGD-T and
            FAB-T).
        n_target_classes: APGD-T and FAB-T target classes.
        n_queries: Square queries.
        clip: optional `(min, max)` of the valid input range.
        output: 'auto', 'logits' or 'probabilities'.
        data_format: layout of 4-D inputs for Square.
        batch_size: examples per batch.
        seed: seed of every attack's random draws (NumPy; the same on every
            backend).
        progress: show progress bars (tqdm, stderr); None: only when
            stderr is a terminal.

    Returns:
        An `AutoAttackResult`; `result.rows(model_name)` gives table rows.
    """
    norm = _attacks.canonical_norm(norm)
    if norm not in STANDARD:
        raise ValueError(f"`norm` must be 'infinity' or 'l2'. Received: "
                         f"norm={norm!r}")
    eps = _attacks._check_eps(eps)  # pylint: disable=protected-access
    names = list(STANDARD[norm] if attacks is None else (
        [attacks] if isinstance(attacks, str) else attacks))
    unknown = [a for a in names if a not in ATTACKS]
    if unknown or not names:
        raise ValueError(f"`attacks` must be a non-empty list of names among "
                         f"{ATTACKS}. Received: {tuple(names)!r}")
    x, clip = _validation.check_inputs(x, clip)
    batch_size = _validation.check_batch_size(batch_size)
    scorer = _apgd.Scorer(model, output, x[:batch_size])
    y = _validation.check_labels(y, len(x), scorer.num_classes)
    correct = np.argmax(scorer.predict(x, batch_size), -1) == y
    robust = correct.copy()
    x_adv = x.copy()
    notes = []
    summary = []
    common = {"clip": clip, "output": output, "batch_size": batch_size,
                  "seed": seed, "progress": progress}
    label = _attacks.NORM_LABELS[norm]
    for name in names:
        if name == "apgd-t" and scorer.num_classes < 4:
            notes.append(f"apgd-t skipped: the targeted DLR loss needs >= 4 "
                         f"classes, the model has {scorer.num_classes}")
            continue
        attacked = int(robust.sum())
        begin = time.perf_counter()
        if name in ("apgd-ce", "apgd-dlr"):
            result = _apgd.apgd(model, x, y, eps, norm, loss=name[5:],
                                steps=steps, restarts=restarts,
                                robust=robust, **common)
            info = {"steps": steps, "restarts": restarts, "loss": name[5:]}
        elif name in ("apgd-t", "fab-t"):
            run, loss = ((_apgd.apgd_targeted, "dlr-targeted")
                         if name == "apgd-t"
                         else (_fab.fab_targeted, "minimal distance"))
            result = run(model, x, y, eps, norm,
                         n_target_classes=n_target_classes, steps=steps,
                         restarts=restarts, robust=robust, **common)
            info = {"steps": steps, "restarts": restarts * min(
                n_target_classes, scorer.num_classes - 1), "loss": loss}
        else:
            result = _square.square(model, x, y, eps, norm,
                                    n_queries=n_queries,
                                    data_format=data_format, robust=robust,
                                    **common)
            info = {"steps": n_queries, "restarts": 1, "loss": "margin"}
        fooled = robust & ~result.robust
        x_adv[fooled] = result.x_adv[fooled]
        robust &= result.robust
        summary.append(dict(
            attack=name, label=f"{_NAMES[name]} {label} eps={eps:g}",
            accuracy=float(robust.mean()), fooled=int(fooled.sum()),
            attacked=attacked, seconds=time.perf_counter() - begin,
            evaluations=result.evaluations, **info))
    return AutoAttackResult(
        eps=eps, norm=norm, n=len(x), clean_accuracy=float(correct.mean()),
        robust_accuracy=float(robust.mean()), attacks=summary, x_adv=x_adv,
        robust=robust, notes=tuple(notes))
