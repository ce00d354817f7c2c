"""Tests for _wrapper.py: metric names and order as NSL 1.4 reported them."""

import keras
import numpy as np
import pytest

import neural_structured_learning as nsl

X = np.random.default_rng(0).random((16, 8)).astype("float32")
Y = (np.arange(16) % 4).astype("int32")


def softmax_model():
    return keras.Sequential([keras.Input((8,), name="feature"),
                             keras.layers.Dense(4, activation="softmax")])


def adversarial():
    model = nsl.keras.AdversarialRegularization(
        softmax_model(), adv_config=nsl.configs.make_adv_reg_config(
            multiplier=0.2, adv_step_size=0.05))
    return model, {"feature": X, "label": Y}, None


def vat():
    return (nsl.keras.VirtualAdversarialRegularization(softmax_model()),
            {"feature": X, "label": Y}, None)


def graph():
    model = nsl.keras.GraphRegularization(
        softmax_model(), nsl.configs.make_graph_reg_config(max_neighbors=1))
    data = {"feature": X, "NL_nbr_0_feature": X[::-1].copy(),
            "NL_nbr_0_weight": np.ones((16, 1), "float32")}
    return model, data, Y


# NSL 1.4's lists (measured with neural-structured-learning 1.4.0 on
# TF 2.15.1 for the adversarial wrapper: `evaluate` returned its values in
# this order and `metrics_names` named them so).
EXPECTED = {
    adversarial: ["loss", "sparse_categorical_crossentropy",
                  "sparse_categorical_accuracy", "scaled_adversarial_loss"],
    vat: ["loss", "sparse_categorical_crossentropy",
          "sparse_categorical_accuracy", "scaled_vat_loss"],
    graph: ["loss", "accuracy", "scaled_graph_loss"],
}


@pytest.mark.parametrize("make", [adversarial, vat, graph],
                         ids=lambda f: f.__name__)
def test_metrics_names_match_evaluate(make):
    def compiled():
        keras.utils.set_random_seed(0)  # Same weights and VAT start.
        model, x, y = make()
        model.compile(keras.optimizers.SGD(0.0),
                      loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model, x, y

    model, x, y = compiled()
    values = model.evaluate(x, y, batch_size=16, verbose=0)
    model_2, x, y = compiled()
    logs = model_2.evaluate(x, y, batch_size=16, verbose=0,
                            return_dict=True)
    names = model.metrics_names
    assert names == EXPECTED[make]
    assert len(values) == len(names)
    # The NSL 1.4 idiom labels every value correctly.
    labeled = dict(zip(names, values))
    assert sorted(labeled) == sorted(logs)
    for name in names:
        np.testing.assert_allclose(labeled[name], logs[name], rtol=1e-4,
                                   atol=1e-6, err_msg=name)
    # Distinct values, so a permutation of the list cannot pass.
    assert len(set(np.round(values, 6))) == len(values)


def test_unweighted_metrics_ignore_sample_weights():
    # 'accuracy' in `metrics` stays unweighted; `weighted_metrics` weighs.
    model = nsl.keras.AdversarialRegularization(
        softmax_model(), sample_weight_key="weight")
    model.compile(keras.optimizers.SGD(0.0),
                  loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], weighted_metrics=["accuracy"])
    weights = np.zeros(16, "float32")
    weights[:2] = 1.0
    data = {"feature": X, "label": Y, "weight": weights}
    logs = model.evaluate(data, batch_size=16, verbose=0, return_dict=True)
    predicted = np.argmax(model.base_model.predict(X, verbose=0), -1)
    correct = (predicted == Y).astype("float32")
    np.testing.assert_allclose(logs["sparse_categorical_accuracy"],
                               correct.mean(), atol=1e-6)
    np.testing.assert_allclose(logs["sparse_categorical_accuracy_2"],
                               correct[:2].mean(), atol=1e-6)
    assert model.metrics_names[:4] == [
        "loss", "sparse_categorical_crossentropy",
        "sparse_categorical_accuracy", "sparse_categorical_accuracy_2"]


@pytest.mark.parametrize("make", [adversarial, vat], ids=lambda f: f.__name__)
def test_sample_weight_argument_with_labels_in_the_dict(make):
    # Keras drops `sample_weight` when `y` is None; NSL 1.4's dict input
    # always has y None, so the wrapper hands the labels to Keras as `y`.
    weights = np.zeros(16, "float32")
    weights[:2] = 1.0
    results = []
    for form in ("dict", "arrays", "unweighted"):
        keras.utils.set_random_seed(0)
        model, data, _ = make()
        model.compile(keras.optimizers.SGD(0.1),
                      loss="sparse_categorical_crossentropy")
        if form == "dict":
            args, kwargs = (data,), dict(sample_weight=weights)
        elif form == "arrays":
            args, kwargs = (X, Y), dict(sample_weight=weights)
        else:
            args, kwargs = (data,), {}
        model.fit(*args, batch_size=16, epochs=1, shuffle=False, verbose=0,
                  **kwargs)
        results.append(model.base_model.get_weights()[0])
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(results[0], results[2], atol=1e-6)
