"""Tests for _outputs.py."""

import keras
import numpy as np
import pytest
from keras import ops

from neural_structured_learning import _testing
from neural_structured_learning.evaluation import _outputs
from neural_structured_learning.lib import gradients

LOGITS = np.array([[-1.0, 2.0, 0.5], [3.0, -2.0, 1.0]], np.float32)
PROBS = np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]], np.float32)


def _dense(units, activation, loss=None):
    model = keras.Sequential([keras.Input((2,)),
                              keras.layers.Dense(units, activation)])
    if loss is not None:
        model.compile("sgd", loss)
    return model


def test_detects_logits_and_probabilities():
    kind = _outputs.detect_output_kind(LOGITS)
    assert (kind.kind, kind.binary, kind.num_classes) == ("logits", False, 3)
    assert kind.describe() == ("logits (values in [-2, 3], row sums in "
                               "[1.5, 2])")
    kind = _outputs.detect_output_kind(PROBS)
    assert (kind.name, kind.num_classes) == ("probabilities", 3)


def test_binary_uses_the_last_activation():
    values = np.array([[0.2], [0.9]], np.float32)  # In [0, 1] either way.
    assert _outputs.detect_output_kind(values).name == "binary probability"
    assert _outputs.detect_output_kind(
        values, model=_dense(1, "linear")).name == "binary logit"
    kind = _outputs.detect_output_kind(values[:, 0],
                                       model=_dense(1, "sigmoid"))
    assert (kind.name, kind.num_classes) == ("binary probability", 2)
    assert _outputs.detect_output_kind(values, "logits").name == (
        "binary logit")  # No activation to contradict the declaration.


def test_compiled_loss_that_disagrees_is_noted():
    model = _dense(3, "softmax", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    kind = _outputs.detect_output_kind(PROBS, model=model)
    assert kind.notes == (
        "the model outputs probabilities but was compiled with a "
        "cross-entropy loss with from_logits=True: it was probably trained "
        "on the wrong loss",)
    model = _dense(3, "linear", "sparse_categorical_crossentropy")
    assert "from_logits=False" in _outputs.detect_output_kind(
        LOGITS, model=model).notes[0]
    assert _outputs.detect_output_kind(PROBS, model=_dense(
        3, "softmax", "sparse_categorical_crossentropy")).notes == ()


@pytest.mark.parametrize("outputs, output, message", [
    (LOGITS, "probabilities",
     r"`output='probabilities'` but the model's outputs are not "
     r"probabilities: values in \[-2, 3\], row sums in \[1.5, 2\]. They "
     r"look like logits: pass output='logits'"),
    (np.array([[1.5], [-0.5]]), "probabilities",
     r"are not probabilities: one output unit, values in \[-0.5, 1.5\]"),
    (PROBS, "logits",
     r"`output='logits'` but the model's outputs are probabilities: .*"
     r"pass output='probabilities'"),
    (np.array([[np.nan, 1.0]]), "auto", r"1 NaN or Inf entries"),
    (np.zeros((2, 3, 4)), "auto",
     r"must output class scores of shape \(batch, num_classes\).* "
     r"Received outputs of shape \(2, 3, 4\)"),
    (LOGITS, "softmax",
     r"`output` must be one of 'auto', 'logits', 'probabilities'. "
     r"Received: output='softmax'"),
])
def test_bad_outputs(outputs, output, message):
    with pytest.raises(ValueError, match=message):
        _outputs.detect_output_kind(outputs, output)


def test_multi_label_sigmoid_outputs():
    values = np.array([[0.9, 0.8], [0.1, 0.7]], np.float32)
    with pytest.raises(ValueError, match=r"The model ends in a sigmoid over "
                       r"2 outputs \(independent per-class probabilities, "
                       r"multi-label\): values in \[0.1, 0.9\]"):
        _outputs.detect_output_kind(values, model=_dense(2, "sigmoid"))
    # Without an activation to tell, such values are taken as logits.
    kind = _outputs.detect_output_kind(values)
    assert kind.kind == "logits"
    assert "taken as logits" in kind.notes[0]
    assert _outputs.detect_output_kind(
        values, model=_dense(2, "linear")).notes == ()


def test_check_batch_catches_a_later_contradiction():
    kind = _outputs.detect_output_kind(PROBS)
    _outputs.check_batch(PROBS[::-1], kind, 2)
    with pytest.raises(ValueError, match=r"taken for probabilities on the "
                       r"first batch .* but batch 3 has values in"):
        _outputs.check_batch(LOGITS, kind, 3)


def test_saturation_counts_one_hot_probabilities():
    probs = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1.0, 1e-30, 0.0]])
    kind = _outputs.detect_output_kind(probs)
    assert _outputs.saturation(probs, kind) == pytest.approx(1 / 3)
    assert _outputs.saturation(LOGITS, _outputs.detect_output_kind(
        LOGITS)) == 0.0


def test_log_scores():
    kinds = {name: _outputs.OutputKind(kind, binary, 2, "")
             for name, kind, binary in [
                 ("logits", "logits", False), ("probs", "probabilities", False),
                 ("logit", "logits", True), ("prob", "probabilities", True)]}
    _testing.assert_allclose(
        _outputs.log_scores(ops.convert_to_tensor(LOGITS), kinds["logits"]),
        LOGITS)
    _testing.assert_allclose(
        _outputs.log_scores(ops.convert_to_tensor(PROBS), kinds["probs"]),
        np.log(PROBS))
    z = np.array([[1.5], [-2.0]], np.float32)
    _testing.assert_allclose(
        _outputs.log_scores(ops.convert_to_tensor(z), kinds["logit"]),
        [[0.0, 1.5], [0.0, -2.0]])
    p = np.array([0.25, 1.0], np.float32)
    _testing.assert_allclose(
        _outputs.log_scores(ops.convert_to_tensor(p), kinds["prob"]),
        [[np.log(0.75), np.log(0.25)], [np.log(1.1754944e-38), 0.0]],
        rtol=1e-5)


def test_attack_loss_known_values():
    scores = ops.convert_to_tensor(np.array([[1.0, 2.0, 3.0]], np.float32))
    labels = ops.convert_to_tensor(np.array([0]))
    # m = log(e^2 + e^3) - 1 = 2 + log(1 + e) = 3.3132617; margin = 3 - 1.
    ce_margin = _outputs.attack_loss(scores, labels, "crossentropy")
    _testing.assert_allclose(ce_margin, 3.3132617 - 1.0, rtol=1e-6)
    _testing.assert_allclose(_outputs.attack_loss(scores, labels, "margin"),
                             2.0)
    # Cross-entropy is softplus(m): -log softmax(s)_0 = 2.4076059.
    _testing.assert_allclose(np.log1p(np.exp(2.3132617)), 2.4076059,
                             rtol=1e-6)
    with pytest.raises(ValueError, match=r"`loss` must be one of "
                       r"'crossentropy', 'margin'. Received: loss='hinge'"):
        _outputs.attack_loss(scores, labels, "hinge")


def test_crossentropy_direction_without_underflow():
    # Example 0: ordinary; example 1: 40 nats of margin, where float32
    # cross-entropy has a zero gradient but the direction is still defined.
    scores = np.array([[0.3, -0.2, 0.1], [40.0, 0.0, -1.0]], np.float32)
    labels = ops.convert_to_tensor(np.array([0, 0]))

    def grad(fn):
        return _testing.to_numpy(gradients.value_and_input_gradients(
            lambda s: fn(s[0]), [ops.convert_to_tensor(scores)])[1][0])

    ours = grad(lambda s: _outputs.attack_loss(s, labels))
    ce = grad(lambda s: ops.sum(keras.losses.sparse_categorical_crossentropy(
        labels, s, from_logits=True)))
    cosine = ours[0] @ ce[0] / np.linalg.norm(ours[0]) / np.linalg.norm(
        ce[0])
    assert cosine == pytest.approx(1.0, abs=1e-6)
    assert np.abs(ce[1]).max() < 1e-12
    # d m / d s for m = logsumexp(s_1, s_2) - s_0: softmax weights, and -1.
    weights = np.exp([0.0, -1.0]) / np.exp([0.0, -1.0]).sum()
    np.testing.assert_allclose(ours[1], [-1.0, *weights], rtol=1e-6)
