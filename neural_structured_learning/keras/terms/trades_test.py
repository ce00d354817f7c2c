"""Tests of the TRADES term: the attack, the value, the gradient paths."""

import keras
import numpy as np
import pytest
from numpy.testing import assert_allclose

import neural_structured_learning as nsl
from neural_structured_learning.keras import RegularizedModel
from neural_structured_learning.keras.terms import TradesTerm
from neural_structured_learning.keras.terms import trades_config

W = np.array([[2.0, -1.0, 0.5], [-1.0, 1.5, 0.0], [0.5, 0.5, -2.0],
              [1.0, 0.0, 1.0]], "float32")
X = np.array([[0.2, 0.9, 0.4, 0.5], [0.7, 0.1, 0.8, 0.3],
              [0.5, 0.5, 0.5, 0.5]], "float32")
Y = np.array([0, 1, 2])


def linear(activation=None):
    x = keras.Input((4,), name="x")
    dense = keras.layers.Dense(3, activation=activation, use_bias=False,
                               kernel_initializer=keras.initializers.Constant(
                                   W))
    return keras.Model(x, dense(x))


def kl(p_logits, q_logits):
    p = np.exp(p_logits - p_logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    q = np.exp(q_logits - q_logits.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    return (p * (np.log(p) - np.log(q))).sum(1)


def compiled(config, from_logits=True, activation=None, lr=0.0):
    keras.utils.set_random_seed(0)
    model = RegularizedModel(linear(activation),
                             terms=[TradesTerm(config)], seed=0)
    model.compile(keras.optimizers.SGD(lr),
                  keras.losses.SparseCategoricalCrossentropy(
                      from_logits=from_logits))
    return model


def test_value_is_beta_times_kl_at_a_neighbour_in_the_ball():
    config = trades_config(epsilon=0.1, step_size=0.05, steps=5, beta=2.0)
    model = compiled(config)
    features = {"x": keras.ops.convert_to_tensor(X)}
    clean = model.base_model(features)
    neighbor = keras.ops.convert_to_numpy(
        model.terms[0].neighbor(model, features, clean, True)["x"])
    assert np.abs(neighbor - X).max() <= 0.1 + 1e-6
    assert neighbor.min() >= 0.0 and neighbor.max() <= 1.0
    # The attack raises the KL well above random points of the same ball.
    logits = X @ W
    attacked = kl(logits, neighbor @ W)
    rng = np.random.default_rng(0)
    random = np.stack([kl(logits, (X + rng.uniform(-0.1, 0.1, X.shape)) @ W)
                       for _ in range(200)])
    assert (attacked >= random.max(0) * 0.99).all(), (attacked, random.max(0))
    # In a training step (lr 0), the term is beta * mean KL at such a
    # neighbour (from its own random start: close, not equal).
    history = model.fit({"x": X}, Y, batch_size=3, epochs=1, verbose=0,
              shuffle=False)
    value = history.history["scaled_trades_loss"][0]
    assert_allclose(value, 2.0 * attacked.mean(), rtol=0.15)
    assert value >= 2.0 * random.max(0).mean()


def test_gradient_flows_through_the_clean_and_the_perturbed_outputs():
    config = trades_config(epsilon=0.1, step_size=0.05, steps=3, beta=1.0)
    model = compiled(config, lr=1.0)
    term = model.terms[0]
    features = {"x": keras.ops.convert_to_tensor(X)}
    neighbor = keras.ops.convert_to_numpy(term.neighbor(
        model, features, model.base_model(features), True)["x"])
    # The step below uses this neighbour (the attack is tested above).
    term.neighbor = lambda *args: {"x": keras.ops.convert_to_tensor(neighbor)}
    model.fit({"x": X}, Y, batch_size=3, epochs=1, verbose=0,
              shuffle=False)
    moved = model.base_model.get_weights()[0] - W

    # By hand: d/dW [CE(y, XW) + mean KL(softmax(XW) || softmax(X'W))],
    # differentiating both arguments of the KL (X' fixed).
    def total(w):
        logits = X @ w
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        ce = -log_p[np.arange(3), Y].mean()
        return ce + kl(logits, neighbor @ w).mean()

    grad = np.zeros_like(W)
    for i in np.ndindex(W.shape):
        e = np.zeros_like(W)
        e[i] = 1e-3
        grad[i] = (total(W.astype("float64") + e)
                   - total(W.astype("float64") - e)) / 2e-3
    assert_allclose(moved, -grad, atol=2e-3)


def test_probabilities_and_logits_agree():
    config = trades_config(epsilon=0.1, step_size=0.05, steps=3, beta=1.0)
    values = []
    for activation, from_logits in ((None, True), ("softmax", False)):
        model = compiled(config, from_logits=from_logits,
                         activation=activation)
        values.append(model.fit({"x": X}, Y, batch_size=3, verbose=0)
                      .history["scaled_trades_loss"][0])
    assert values[0] > 1e-3
    assert_allclose(values[0], values[1], rtol=1e-3)


def test_serialization_round_trip_and_errors():
    term = TradesTerm(trades_config(epsilon=0.2), from_logits=True)
    again = TradesTerm.from_config(term.get_config())
    assert again.adv_config == term.adv_config and again.from_logits
    with pytest.raises(TypeError, match="AdvRegConfig"):
        TradesTerm(nsl.configs.VirtualAdvConfig())
    with pytest.raises(ValueError, match="init_stddev"):
        TradesTerm(init_stddev=0.0)
