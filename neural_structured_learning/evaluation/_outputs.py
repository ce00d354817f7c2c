"""Classifier outputs (logits or probabilities), class scores and attack losses.

An attack must maximise the loss of the model's *class distribution*. Taking
probabilities for logits (softmax of probabilities is nearly uniform) or
logits for probabilities (the log of a negative number) silently weakens the
attack, so the kind of output is detected from the outputs themselves and
checked against what the caller declared.
"""

import dataclasses

import numpy as np
from keras import ops

OUTPUTS = ("auto", "logits", "probabilities")
LOSSES = ("crossentropy", "margin")

# Smallest positive normal float32: log(max(p, _TINY)) stays finite.
_TINY = 1.1754944e-38
# Softmax rows must sum to 1 within this (float32 sums of 1000 classes do).
_SUM_TOLERANCE = 1e-3
_CROSSENTROPY_LOSSES = ("sparse_categorical_crossentropy",
                        "categorical_crossentropy", "binary_crossentropy")


@dataclasses.dataclass(frozen=True)
class OutputKind:
    """What a classifier outputs, as detected by `detect_output_kind`.

    Attributes:
        kind: 'logits' or 'probabilities'.
        binary: True for one output unit (a sigmoid or a single logit).
        num_classes: number of classes (2 when `binary`).
        evidence: what the decision rests on, in words.
        notes: things the user should know (e.g. a compiled loss that
            disagrees with the outputs).
    """

    kind: str
    binary: bool
    num_classes: int
    evidence: str
    notes: tuple = ()

    @property
    def name(self):
        """'logits', 'probabilities', 'binary logit' or 'binary
        probability'."""
        if self.binary:
            return "binary " + ("logit" if self.kind == "logits"
                                else "probability")
        return self.kind

    def describe(self):
        """One line: the kind and the evidence."""
        return f"{self.name} ({self.evidence})"


def _final_activation(model):
    """The name of the model's last activation ('softmax', 'sigmoid',
    'linear', ...), or None when it cannot be told."""
    layers = getattr(model, "layers", None)
    layer = layers[-1] if layers else model
    if type(layer).__name__ == "Softmax":
        return "softmax"
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    return name if isinstance(name, str) else None


def _compiled_from_logits(model):
    """`from_logits` of the model's compiled cross-entropy loss, or None."""
    loss = getattr(model, "loss", None)
    if isinstance(loss, str):
        return False if loss in _CROSSENTROPY_LOSSES else None
    get_config = getattr(loss, "get_config", None)
    if get_config is None:
        return None
    try:
        value = get_config().get("from_logits")
    except (TypeError, NotImplementedError, AttributeError):
        return None
    return value if isinstance(value, bool) else None


def _as_2d(outputs):
    y = np.asarray(outputs, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise ValueError(
            "The model must output class scores of shape (batch, "
            "num_classes), or (batch,) / (batch, 1) for a binary classifier. "
            f"Received outputs of shape {tuple(np.shape(outputs))}.")
    if not np.all(np.isfinite(y)):
        raise ValueError(
            f"The model's outputs have {int(np.sum(~np.isfinite(y)))} NaN or "
            "Inf entries on clean inputs: the model is broken or the inputs "
            "are not what it was trained on.")
    return y


def _looks_like_probabilities(y):
    """(verdict, evidence) from the values alone."""
    low, high = float(y.min()), float(y.max())
    if y.shape[1] == 1:
        return (low >= 0 and high <= 1,
                f"one output unit, values in [{low:.4g}, {high:.4g}]")
    sums = y.sum(axis=1)
    verdict = low >= 0 and float(np.abs(sums - 1).max()) <= _SUM_TOLERANCE
    return verdict, (f"values in [{low:.4g}, {high:.4g}], row sums in "
                     f"[{sums.min():.6g}, {sums.max():.6g}]")


def detect_output_kind(outputs, output="auto", *, model=None):
    """Tells logits from probabilities, and checks a declared kind.

    Multi-class outputs are probabilities when every value is >= 0 and every
    row sums to 1 (within 1e-3); otherwise they are logits. For one output
    unit, the model's last activation decides ('sigmoid': probability,
    'linear': logit); without one, values in [0, 1] count as probabilities.

    Args:
        outputs: the model's outputs on some clean inputs, `(batch, C)` or
            `(batch,)` / `(batch, 1)`.
        output: 'auto' to detect, or the declared 'logits' /
            'probabilities' (checked against the outputs).
        model: optional model; its last activation and compiled loss are
            used as extra evidence.

    Returns:
        An `OutputKind`.

    Raises:
        ValueError: for an unknown `output`, outputs of the wrong shape or
            with NaN/Inf, multi-label-looking outputs, or a declared kind the
            outputs contradict.

    Example:
    >>> nsl.evaluation.detect_output_kind([[0.2, 0.8], [0.5, 0.5]]).kind
    'probabilities'
    """
    if output not in OUTPUTS:
        raise ValueError(f"`output` must be one of "
                         f"{', '.join(map(repr, OUTPUTS))}. Received: "
                         f"output={output!r}")
    y = _as_2d(outputs)
    binary = y.shape[1] == 1
    looks_prob, evidence = _looks_like_probabilities(y)
    activation = _final_activation(model) if model is not None else None
    if activation is not None:
        evidence += f"; last activation {activation}"
    if binary and activation in ("sigmoid", "linear"):
        looks_prob = activation == "sigmoid" and looks_prob
    notes = []
    if not binary and not looks_prob and y.min() >= 0 and y.max() <= 1:
        if activation == "sigmoid" and output != "logits":
            raise ValueError(
                f"The model ends in a sigmoid over {y.shape[1]} outputs "
                f"(independent per-class probabilities, multi-label): "
                f"{evidence}. This evaluation attacks single-label "
                "classifiers: give a model that returns logits or softmax "
                "probabilities, or pass output='logits' to attack these "
                "values as class scores.")
        if output == "auto" and activation != "linear":
            notes.append(
                "the outputs are in [0, 1] but do not sum to 1: taken as "
                "logits; if they are per-class (multi-label) probabilities, "
                "this evaluation does not apply")
    detected = "probabilities" if looks_prob else "logits"
    # One unit's values in [0, 1] may be logits too, unless the activation
    # says otherwise; values outside [0, 1] are never probabilities.
    strong = not binary or activation in ("sigmoid", "linear")
    outside = binary and (y.min() < 0 or y.max() > 1)
    if output == "probabilities" and detected == "logits" and (
            strong or outside):
        raise ValueError(
            "`output='probabilities'` but the model's outputs are not "
            f"probabilities: {evidence}. They look like logits: pass "
            "output='logits' (or 'auto').")
    if output == "logits" and detected == "probabilities" and strong:
        raise ValueError(
            "`output='logits'` but the model's outputs are probabilities: "
            f"{evidence}. Attacking probabilities as logits maximises the "
            "wrong loss (the softmax of probabilities is nearly uniform): "
            "pass output='probabilities' (or 'auto').")
    kind = detected if output == "auto" else output
    return OutputKind(kind=kind, binary=binary,
                      num_classes=2 if binary else y.shape[1],
                      evidence=evidence,
                      notes=tuple(notes) + _notes(kind, model))


def _notes(kind, model):
    notes = []
    from_logits = _compiled_from_logits(model) if model is not None else None
    if from_logits is not None and from_logits != (kind == "logits"):
        notes.append(
            f"the model outputs {kind} but was compiled with a "
            f"cross-entropy loss with from_logits={from_logits}: it was "
            "probably trained on the wrong loss")
    return tuple(notes)


def check_batch(outputs, kind, batch_number):
    """Raises if a later batch contradicts the kind detected on the first.

    Args:
        outputs: the model's outputs on the batch (NumPy).
        kind: the `OutputKind` detected on the first batch.
        batch_number: 1-based index of the batch, for the message.
    """
    y = _as_2d(outputs)
    if y.shape[1] != (1 if kind.binary else kind.num_classes):
        raise ValueError(
            f"The model's outputs on batch {batch_number} have shape "
            f"{tuple(np.shape(outputs))}; the first batch had "
            f"{kind.num_classes} classes.")
    if kind.kind == "probabilities" and not _looks_like_probabilities(y)[0]:
        raise ValueError(
            f"The model's outputs were taken for {kind.name} on the first "
            f"batch ({kind.evidence}), but batch {batch_number} has "
            f"{_looks_like_probabilities(y)[1]}. Declare the kind: pass "
            "output='logits' (or 'probabilities').")


def saturation(outputs, kind):
    """Fraction of examples whose probabilities are one-hot in float32.

    When every class but one has probability 0 (below the smallest normal
    float32), the gradient of any loss of the probabilities is zero and
    attacks stall: gradient masking by a saturated softmax or sigmoid.
    Always 0 for logits.
    """
    if kind.kind == "logits":
        return 0.0
    y = _as_2d(outputs)
    if kind.binary:
        y = np.concatenate([1 - y, y], axis=1)
    return float(np.mean(np.sum(y >= _TINY, axis=1) <= 1))


def log_scores(outputs, kind):
    """Class scores `s` of shape `(batch, C)` with `softmax(s)` = the model's
    class distribution.

    * logits `z`: `s = z`; one logit `z`: `s = [0, z]`.
    * probabilities `p`: `s = log(max(p, tiny))`; one probability `p`:
      `s = log([1 - p, p])`.

    Args:
        outputs: a backend tensor of model outputs.
        kind: an `OutputKind`.

    Returns:
        A float tensor `(batch, C)`.
    """
    z = outputs
    if len(z.shape) == 1:
        z = ops.expand_dims(z, -1)
    if kind.binary:
        first = ops.zeros_like(z) if kind.kind == "logits" else 1.0 - z
        z = ops.concatenate([first, z], axis=-1)
    if kind.kind == "probabilities":
        z = ops.log(ops.maximum(z, _TINY))
    return z


def attack_loss(scores, labels, loss="crossentropy"):
    """The loss an untargeted attack maximises, summed over the batch.

    With `s` the class scores and `y` the label of an example:

    * 'crossentropy': `m = logsumexp_{j != y} s_j - s_y`. Cross-entropy is
      `CE = softplus(m)`, an increasing function of `m`, so each example's
      gradient has the same direction as the CE gradient, but it does not
      underflow when the model is confident (the CE gradient of an example
      at 30 nats of margin is ~1e-13, below the 1e-6 floor of the L2
      normalisation, which would stall an L2 attack).
    * 'margin': `m = max_{j != y} s_j - s_y` (Carlini and Wagner, 2017).

    The per-example sum keeps each example's gradient independent of the
    batch size.

    Args:
        scores: float tensor `(batch, C)` from `log_scores`.
        labels: int tensor `(batch,)` of class indices.
        loss: 'crossentropy' or 'margin'.

    Returns:
        A scalar tensor: `sum_i m_i`.
    """
    if loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {', '.join(map(repr, LOSSES))}"
                         f". Received: loss={loss!r}")
    onehot = ops.one_hot(labels, scores.shape[-1], dtype=scores.dtype)
    true = ops.sum(scores * onehot, axis=-1)
    others = scores - onehot * 1e9
    if loss == "crossentropy":
        best_other = ops.logsumexp(others, axis=-1)
    else:
        best_other = ops.max(others, axis=-1)
    return ops.sum(best_other - true)
