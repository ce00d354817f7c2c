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
# this order and `metrics_names` named them so), with each metric under
# Keras's name first (`accuracy`: the one rule of all wrappers) and 1.4's
# where it differs.
EXPECTED = {
    adversarial: ["loss", "sparse_categorical_crossentropy", "accuracy",
                  "sparse_categorical_accuracy", "scaled_adversarial_loss"],
    vat: ["loss", "sparse_categorical_crossentropy", "accuracy",
          "scaled_vat_loss"],
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
    # Distinct values (but for 1.4's alias of a metric), so a permutation
    # of the list cannot pass.
    aliases = {"sparse_categorical_accuracy": "accuracy"}
    distinct = [v for n, v in zip(names, values) if n not in aliases]
    assert len(set(np.round(distinct, 6))) == len(distinct)
    for alias, name in aliases.items():
        if alias in labeled:
            assert labeled[alias] == labeled[name]


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
    np.testing.assert_allclose(logs["accuracy"], correct.mean(), atol=1e-6)
    np.testing.assert_allclose(logs["accuracy_2"], correct[:2].mean(),
                               atol=1e-6)
    assert model.metrics_names[:6] == [
        "loss", "sparse_categorical_crossentropy", "accuracy",
        "sparse_categorical_accuracy", "accuracy_2",
        "sparse_categorical_accuracy_2"]


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


@pytest.mark.parametrize("make", [adversarial, vat, graph],
                         ids=lambda f: f.__name__)
def test_one_metric_naming_rule_so_val_accuracy_works_everywhere(make):
    """`metrics=['accuracy']` is `accuracy` (and `val_accuracy`) in all."""
    keras.utils.set_random_seed(0)
    model, x, y = make()
    model.compile("adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", keras.metrics.SparseCategoricalAccuracy(
                      name="acc_object")])
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=0)
    history = model.fit(x, y, validation_data=(x, y), batch_size=8, epochs=2,
                        callbacks=[stop], verbose=0).history
    assert {"accuracy", "val_accuracy", "acc_object",
            "val_acc_object"} <= set(history)
    np.testing.assert_allclose(history["accuracy"], history["acc_object"],
                               rtol=1e-6)


@pytest.mark.parametrize("make", [adversarial, vat, graph],
                         ids=lambda f: f.__name__)
def test_saved_base_model_loads_without_optimizer_warnings(make, tmp_path):
    """The base model is compiled with the optimizer that trains it."""
    import warnings  # pylint: disable=import-outside-toplevel
    keras.utils.set_random_seed(0)
    model, x, y = make()
    model.compile("adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert model.base_model.optimizer is model.optimizer
    path = str(tmp_path / "base.keras")
    model.base_model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.saving.load_model(path)
    assert not [w for w in caught if "optimizer" in str(w.message)], [
        str(w.message) for w in caught]
    assert int(loaded.optimizer.iterations) == 2
    loaded.fit(X, Y, batch_size=8, epochs=1, verbose=0)
