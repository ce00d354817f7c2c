"""Tests for propagation.py: NumPy references, padding, stop-gradient."""

import keras
import numpy as np
import pytest

from neural_structured_learning._testing import assert_allclose
from neural_structured_learning.lib import gradients
from neural_structured_learning.lib import propagation


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("beta", [0.0, 0.1, 1.0])
def test_neighborhood_prediction_matches_reference(beta):
    rng = np.random.default_rng(0)
    sources = rng.normal(size=(4, 3)).astype("float32")
    targets = rng.normal(size=(4, 2, 3)).astype("float32")
    weights = rng.uniform(0.1, 1, size=(4, 2)).astype("float32")
    weights[1, 1] = 0.0        # Padding drops out of the mean.
    weights[3] = 0.0           # No neighbour at all: the sample alone.
    expected = np.empty_like(sources)
    for i in range(4):
        if weights[i].sum() == 0:
            expected[i] = sources[i]
            continue
        mean = (weights[i, :, None] * targets[i]).sum(0) / weights[i].sum()
        expected[i] = beta * sources[i] + (1 - beta) * mean
    assert_allclose(propagation.neighborhood_prediction(
        sources, targets, weights, beta), expected, rtol=1e-5, atol=1e-6)
    # Sample-major merged neighbours with [B * N, 1] weights, as unpacked.
    assert_allclose(propagation.neighborhood_prediction(
        sources, targets.reshape(8, 3), weights.reshape(8, 1), beta),
        expected, rtol=1e-5, atol=1e-6)
    # Scaling every weight of a sample does not change its mean.
    assert_allclose(propagation.neighborhood_prediction(
        sources, targets, 7 * weights, beta), expected, rtol=1e-5, atol=1e-6)


def test_distillation_loss_matches_kl():
    rng = np.random.default_rng(1)
    teacher = rng.normal(size=(5, 4)).astype("float32")
    student = rng.normal(size=(5, 4)).astype("float32")
    q, p = _softmax(teacher), _softmax(student)
    expected = np.mean(np.sum(q * np.log(q / p), -1))
    assert_allclose(propagation.distillation_loss(teacher, student), expected,
                    rtol=1e-5)
    assert_allclose(propagation.distillation_loss(q, p, from_logits=False),
                    expected, rtol=1e-4)
    assert_allclose(propagation.distillation_loss(teacher, teacher), 0.0,
                    atol=1e-6)
    # Temperature: the teacher sharpened, for logits and probabilities.
    sharp = _softmax(teacher / 0.5)
    expected = np.mean(np.sum(sharp * np.log(sharp / p), -1))
    assert_allclose(propagation.distillation_loss(teacher, student,
                                                  temperature=0.5),
                    expected, rtol=1e-5)
    assert_allclose(propagation.distillation_loss(q, p, from_logits=False,
                                                  temperature=0.5),
                    expected, rtol=1e-4)


def test_distillation_moves_the_student_only():
    # d/d(student logits) of KL(q || softmax(s)) is softmax(s) - q, per row
    # divided by B (the mean); the teacher gets no gradient.
    teacher = np.array([[2.0, 0.0, -1.0]], "float32")
    student = np.array([[0.0, 1.0, 0.0]], "float32")

    def loss(inputs):
        return propagation.distillation_loss(inputs[0], inputs[1])

    _, grads = gradients.value_and_input_gradients(
        loss, [keras.ops.convert_to_tensor(teacher),
               keras.ops.convert_to_tensor(student)])
    assert_allclose(grads[1], _softmax(student) - _softmax(teacher),
                    rtol=1e-5, atol=1e-6)
    assert_allclose(grads[0], np.zeros_like(teacher), atol=0)


def test_backends_agree_on_a_fixed_input():
    # The same numbers on every backend (the suite runs once per backend).
    s = np.array([[1.0, -1.0], [0.5, 0.5]], "float32")
    t = np.array([[[0.0, 2.0], [2.0, 0.0]], [[1.0, 1.0], [3.0, 3.0]]],
                 "float32")
    z = propagation.neighborhood_prediction(s, t, [[1.0, 3.0], [0.0, 0.0]],
                                            self_weight=0.25)
    assert_allclose(z, [[0.25 + 0.75 * 1.5, -0.25 + 0.75 * 0.5], [0.5, 0.5]],
                    rtol=1e-6)
    assert_allclose(propagation.distillation_loss(z, s),
                    0.5 * (np.sum(_softmax(np.asarray(
                        [1.375, 0.125])) * np.log(_softmax(np.asarray(
                            [1.375, 0.125])) / _softmax(s[0])))), rtol=1e-5)
    assert keras.backend.backend() in ("tensorflow", "jax", "torch")
