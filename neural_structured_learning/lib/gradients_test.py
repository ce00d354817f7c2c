"""Tests for gradients.py, the per-backend input-gradient primitive."""

import keras
import numpy as np
import pytest
from keras import ops

from neural_structured_learning._testing import assert_allclose
from neural_structured_learning._testing import to_numpy
from neural_structured_learning.lib import gradients

W = np.array([[1., 2., 3.], [4., 5., 6.]], "float32")


def test_forward_with_loss_gradients_is_the_transposed_jacobian():
    w = ops.convert_to_tensor(W)
    x = ops.convert_to_tensor(np.array([[1., -1.], [2., 0.5]], "float32"))
    outputs, loss_gradients = gradients.forward_with_loss_gradients(
        lambda xs: ops.matmul(xs[0], w), [x])
    assert_allclose(outputs, to_numpy(x) @ W)
    cotangent = np.array([[1., 0., -1.], [0., 2., 0.]], "float32")
    (grad,), _ = loss_gradients(
        lambda out: ops.sum(out * ops.convert_to_tensor(cotangent)))
    assert_allclose(grad, cotangent @ W.T)


def test_value_and_input_gradients_of_a_structure():
    a = ops.convert_to_tensor(np.array([[1., 2.]], "float32"))
    b = ops.convert_to_tensor(np.array([[3.]], "float32"))
    value, (ga, gb) = gradients.value_and_input_gradients(
        lambda xs: ops.sum(ops.square(xs[0])) + 5.0 * ops.sum(xs[1]), [a, b])
    assert_allclose(value, 20.0)
    assert_allclose(ga, [[2., 4.]])
    assert_allclose(gb, [[5.]])


def test_unconnected_input_gets_zero_gradient():
    a = ops.ones((1, 2))
    b = ops.ones((1, 3))
    _, (ga, gb) = gradients.value_and_input_gradients(
        lambda xs: ops.sum(xs[0]), [a, b])
    assert_allclose(ga, [[1., 1.]])
    assert_allclose(gb, np.zeros((1, 3)))


def batchnorm_model():
    model = keras.Sequential([keras.Input((2,)),
                              keras.layers.BatchNormalization(momentum=0.5)])
    return model, model.layers[0].moving_mean


def test_scratch_pass_discards_variable_writes():
    model, moving_mean = batchnorm_model()
    x = ops.convert_to_tensor(np.array([[2., 4.], [4., 8.]], "float32"))
    gradients.value_and_input_gradients(
        lambda xs: ops.sum(model(xs[0], training=True)), [x])
    assert_allclose(moving_mean, [0., 0.])  # Written only inside the scope.


def test_forward_pass_keeps_variable_writes():
    model, moving_mean = batchnorm_model()
    x = ops.convert_to_tensor(np.array([[2., 4.], [4., 8.]], "float32"))
    gradients.forward_with_loss_gradients(lambda xs: model(xs[0], training=True), [x])
    assert_allclose(moving_mean, [1.5, 3.])  # 0.5 * 0 + 0.5 * batch mean.


def test_assert_finite():
    finite = [ops.ones((2,))]
    assert gradients.assert_finite(finite, "bad") is not None
    with pytest.raises(Exception, match="bad gradient"):
        to_numpy(gradients.assert_finite(
            [ops.convert_to_tensor(np.array([1., np.inf], "float32"))],
            "bad gradient"))
