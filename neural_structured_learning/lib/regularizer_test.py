"""Tests for regularizer.py against NSL 1.4's vectors (§9.2 E)."""

import numpy as np
from keras import ops

from neural_structured_learning import configs
from neural_structured_learning._testing import assert_allclose
from neural_structured_learning.lib import regularizer


def test_adv_regularizer():
    def model_fn(x, is_train, reuse):
        assert is_train is False and reuse is True
        return x

    def mse(targets, predictions):
        return ops.mean(ops.square(targets - predictions))

    loss = regularizer.adv_regularizer(
        ops.convert_to_tensor(np.array([[1., 1., 1., 0., 1.]], "float32")),
        ops.ones((1, 5)), model_fn, mse)
    assert_allclose(loss, 0.2, rtol=1e-6)


def vat_config(**kwargs):
    neighbor = configs.AdvNeighborConfig(adv_step_size=kwargs.pop("step"))
    distance = kwargs.pop("distance", configs.DistanceConfig(
        "l2", sum_over_axis=-1))
    return configs.VirtualAdvConfig(neighbor, distance, **kwargs)


def test_vat_linear_embedding():
    # Embedding x A with A = [[1, 5], [2, 2]]: the power iteration from
    # d0 = [0.6, 0.8] moves d toward the top eigenvector of A A^T; the value
    # is 1.4's (computed there from the closed-form Hessian).
    a = ops.convert_to_tensor(np.array([[1., 5.], [2., 2.]], "float32"))
    x = ops.convert_to_tensor(np.array([[1., -1.]], "float32"))
    loss = regularizer.virtual_adv_regularizer(
        x, lambda v: ops.matmul(v, a),
        vat_config(step=0.1, approx_difference=1e-3),
        initial_direction=ops.convert_to_tensor(
            np.array([[.6, .8]], "float32")))
    assert_allclose(loss, 0.3197073, rtol=1e-4)


def test_vat_cosine_finds_the_worst_direction():
    # Identity embedding, cosine distance, ||x|| = 1, unit step: 20 power
    # iterations turn d toward -x, where x + d is (nearly) orthogonal to x
    # and the cosine distance (nearly) 1, its supremum; 1.4's value is 1.0.
    x = ops.convert_to_tensor(np.array([[.28, -.96]], "float32"))
    config = vat_config(step=1.0, approx_difference=1.0, num_approx_steps=20,
                        distance=configs.DistanceConfig("cosine",
                                                        sum_over_axis=-1))
    direction = regularizer.virtual_adv_direction(x, lambda v: v, x, config,
                                                  seed=1)
    # d -> -x (cosine with -x near 1), where the distance nears 1. At d = -x
    # exactly, x + d = 0 and the cosine is rounding noise, so the value
    # itself is checked only from below.
    assert float(ops.sum(direction * -x)) > 0.99
    loss = regularizer.virtual_adv_regularizer(x, lambda v: v, config,
                                               seed=1)
    assert 0.99 < float(loss) < 1.1


def test_vat_without_power_iteration():
    x = ops.convert_to_tensor(np.random.default_rng(0).normal(
        size=(4, 3)).astype("float32"))
    loss = regularizer.virtual_adv_regularizer(
        x, lambda v: v, vat_config(step=0.1, num_approx_steps=0), seed=2)
    assert_allclose(loss, 0.01, rtol=1e-5)  # ||0.1 d||^2 with ||d|| = 1.


def test_vat_on_a_dict_is_joint():
    x = {"a": ops.ones((2, 2)), "b": ops.ones((2, 1))}
    loss = regularizer.virtual_adv_regularizer(
        x, lambda v: ops.concatenate([v["a"], v["b"]], axis=1),
        vat_config(step=0.5, num_approx_steps=1, approx_difference=0.1),
        seed=3)
    assert_allclose(loss, 0.25, rtol=1e-5)  # ||0.5 d||^2 over all 3 dims.


def test_vat_direction_has_unit_norm_even_when_gradients_are_tiny():
    # A nearly flat embedding (slope 1e-9) gives power-iteration gradients
    # of about 1e-21, far below the 1e-6 floor of a plain normalisation;
    # the direction must still have unit norm per example (so the
    # perturbation has norm adv_step_size), pointing along the slope.
    slope = np.array([[3.], [4.]], "float32") * 1e-9
    x = ops.convert_to_tensor(np.zeros((2, 2), "float32"))
    config = vat_config(step=0.5, approx_difference=1e-3,
                        distance=configs.DistanceConfig(
                            "l2", sum_over_axis=-1))
    direction = regularizer.virtual_adv_direction(
        x, lambda v: ops.matmul(v, ops.convert_to_tensor(slope)),
        ops.zeros((2, 1)), config,
        initial_direction=ops.convert_to_tensor(
            np.array([[1., 0.], [0., 1.]], "float32")))
    assert_allclose(ops.abs(direction), np.array([[.6, .8], [.6, .8]]),
                    atol=1e-5)
    # An all-zero gradient stays zero (no NaN).
    zero = regularizer.virtual_adv_direction(
        x, lambda v: ops.zeros((2, 1)) * ops.sum(v), ops.zeros((2, 1)),
        config, seed=0)
    assert_allclose(zero, np.zeros((2, 2)))
