"""Tests for regularized_model.py: one pipeline, terms that combine."""

import keras
import numpy as np
import pytest

import neural_structured_learning as nsl
from neural_structured_learning._testing import assert_allclose
from neural_structured_learning._testing import to_numpy
from neural_structured_learning.keras import regularized_model

terms = nsl.keras.terms
RegularizedModel = nsl.keras.RegularizedModel

_RNG = np.random.default_rng(0)
_B, _D, _C = 6, 4, 3
X = _RNG.normal(size=(_B, _D)).astype("float32")
NBR = {"NL_nbr_0_x": _RNG.normal(size=(_B, _D)).astype("float32"),
       "NL_nbr_0_weight": np.ones((_B, 1), "float32"),
       "NL_nbr_1_x": _RNG.normal(size=(_B, _D)).astype("float32"),
       "NL_nbr_1_weight": np.full((_B, 1), 0.5, "float32")}
Y = np.array([0, 1, 2, 1, 0, 2], "int32")
Y_SEMI = np.array([0, -1, 2, -1, 0, 2], "int32")  # Rows 1 and 3 unlabeled.
_KERNEL = _RNG.normal(size=(_D, _C)).astype("float32")


def _base():
    inputs = keras.Input((_D,), name="x")
    hidden = keras.layers.Dense(
        5, "tanh", name="hidden",
        kernel_initializer=keras.initializers.Constant(
            _RNG.normal(size=(_D, 5)).astype("float32")))
    hidden.build((None, _D))
    outputs = keras.layers.Dense(_C, name="logits")(hidden(inputs))
    return keras.Model(inputs, outputs)


_BASE_WEIGHTS = [to_numpy(w) for w in _base().get_weights()]


def _graph():
    return terms.GraphTerm(nsl.configs.make_graph_reg_config(
        max_neighbors=2, multiplier=0.5, distance_type="l2",
        sum_over_axis=-1), embedding_layer="hidden")


def _adversarial():
    return terms.AdversarialTerm(nsl.configs.make_adv_reg_config(
        multiplier=0.7, adv_step_size=0.3, adv_grad_norm="l2"))


def _vat():
    # A large xi: with the default 1e-3 the power iteration's direction
    # depends on float32 rounding of the clean logits, which differs
    # between a pass over the batch and one over batch + neighbours.
    config = nsl.keras.default_vat_config()
    config = nsl.configs.VirtualAdvConfig(
        config.adv_neighbor_config, config.distance_config,
        num_approx_steps=1, approx_difference=0.1)
    return terms.VirtualAdversarialTerm(config, multiplier=0.4)


def _step(term_list, y=Y, unlabeled_label=None, seed=1, neighbors=True):
    """Weights after one SGD step of a fresh model with `term_list`."""
    base = _base()
    base.set_weights(_BASE_WEIGHTS)
    model = RegularizedModel(base, terms=term_list,
                             unlabeled_label=unlabeled_label, seed=seed)
    model.compile(keras.optimizers.SGD(0.1),
                  keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))
    x = {"x": X, **(NBR if neighbors else {})}
    logs = model.train_on_batch(x, y, return_dict=True)
    return [to_numpy(w) for w in base.get_weights()], logs


def _delta(weights):
    return [w - w0 for w, w0 in zip(weights, _BASE_WEIGHTS)]


def test_terms_add_up_in_one_step():
    # SGD is linear in the gradient, so one step of labeled + graph +
    # adversarial moves the weights by the sum of what each term's own
    # model moves them (each includes the labeled loss once).
    labeled, _ = _step([])
    graph, graph_logs = _step([_graph()])
    adversarial, adv_logs = _step([_adversarial()])
    both, logs = _step([_graph(), _adversarial()])
    for b, g, a, l in zip(_delta(both), _delta(graph), _delta(adversarial),
                          _delta(labeled)):
        assert_allclose(b, g + a - l, rtol=1e-4, atol=3e-5)
    # Each term is on, and reported as in its own model.
    assert graph_logs["scaled_graph_loss"] > 1e-3
    assert adv_logs["scaled_adversarial_loss"] > 1.05 * 0.7 * (
        adv_logs["sparse_categorical_crossentropy"])
    assert_allclose(logs["scaled_graph_loss"],
                    graph_logs["scaled_graph_loss"], rtol=1e-5)
    assert_allclose(logs["scaled_adversarial_loss"],
                    adv_logs["scaled_adversarial_loss"], rtol=1e-5)
    assert_allclose(logs["loss"], logs["sparse_categorical_crossentropy"]
                    + logs["scaled_graph_loss"]
                    + logs["scaled_adversarial_loss"], rtol=1e-5)


def test_three_terms_with_unlabeled_rows_add_up():
    # Graph + adversarial + VAT on a batch with unlabeled rows: the labeled
    # and adversarial losses cover labeled rows, graph and VAT every row.
    def step(term_list):
        return _step(term_list, y=Y_SEMI, unlabeled_label=-1)

    labeled, labeled_logs = step([])
    singles = [step([make()])[0] for make in (_graph, _adversarial, _vat)]
    combined, logs = step([_graph(), _adversarial(), _vat()])
    for i, c in enumerate(_delta(combined)):
        expected = sum(_delta(s)[i] for s in singles) - 2 * _delta(labeled)[i]
        assert_allclose(c, expected, rtol=1e-4, atol=3e-5)
    assert sorted(logs) == ["loss", "scaled_adversarial_loss",
                            "scaled_graph_loss", "scaled_vat_loss",
                            "sparse_categorical_crossentropy"]
    # The labeled loss is the mean over the 4 labeled rows only.
    base = _base()
    base.set_weights(_BASE_WEIGHTS)
    z = to_numpy(base(X))
    z = z - z.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    rows = Y_SEMI >= 0
    expected = -log_p[rows, Y_SEMI[rows]].mean()
    assert_allclose(labeled_logs["sparse_categorical_crossentropy"],
                    expected, rtol=1e-5)


def test_each_batch_is_parsed_once_per_step(monkeypatch):
    calls = []
    original = RegularizedModel._parse  # pylint: disable=protected-access

    def spy(self, x, shapes=False):
        calls.append(shapes)
        return original(self, x, shapes=shapes)

    monkeypatch.setattr(RegularizedModel, "_parse", spy)
    base = _base()
    model = RegularizedModel(base, terms=[_graph(), _adversarial()])
    model.compile(keras.optimizers.SGD(0.1),
                  keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True), metrics=["accuracy"],
                  run_eagerly=True)
    model.train_on_batch({"x": X, **NBR}, Y)  # Builds the model.
    model.test_on_batch({"x": X, **NBR}, Y)
    calls.clear()
    model.train_on_batch({"x": X, **NBR}, Y)
    assert calls == [False]
    calls.clear()
    model.test_on_batch({"x": X, **NBR}, Y)
    assert calls == [False]


def test_compute_loss_without_call_gives_the_same_loss():
    # A custom loop may call compute_loss on its own: it parses x and runs
    # every term from y_pred, with the same result as after call().
    base = _base()
    base.set_weights(_BASE_WEIGHTS)
    model = RegularizedModel(base, terms=[_graph(), _adversarial()])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    x = {"x": X, **NBR}
    after_call = model.compute_loss(x, Y, model(x), training=False)
    alone = model.compute_loss(x, Y, base(X), training=False)
    # 1e-5: a GPU sums in another order each pass (2.7e-6 on an H100).
    assert_allclose(alone, after_call, rtol=1e-5)
    labeled = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        Y, base(X))
    assert float(to_numpy(alone)) > float(to_numpy(labeled)) + 1e-3


def test_combined_model_saves_and_loads(tmp_path):
    base = _base()
    model = RegularizedModel(base, terms=[_graph(), _adversarial(), _vat()],
                             unlabeled_label=-1, seed=2)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    x = {"x": X, **NBR}
    model.fit(x, Y_SEMI, batch_size=_B, epochs=2, verbose=0)
    path = str(tmp_path / "combined.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is RegularizedModel
    assert [type(t) for t in loaded.terms] == [type(t) for t in model.terms]
    assert loaded.terms[0].graph_reg_config == model.terms[0].graph_reg_config
    assert loaded.unlabeled_label == -1
    assert_allclose(loaded.base_model(X), base(X), rtol=1e-6)
    history = loaded.fit(x, Y_SEMI, batch_size=_B, epochs=1, verbose=0)
    assert loaded.metrics_names == [
        "loss", "sparse_categorical_crossentropy",
        "accuracy", "scaled_graph_loss",
        "scaled_adversarial_loss", "scaled_vat_loss"]
    assert sorted(history.history) == [
        "accuracy", "loss", "scaled_adversarial_loss", "scaled_graph_loss",
        "scaled_vat_loss", "sparse_categorical_crossentropy"]


def test_plain_data_and_predict_need_no_neighbors():
    base = _base()
    model = RegularizedModel(base, terms=[_graph(), _adversarial()])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    logs = model.fit(X, Y, batch_size=_B, epochs=1, verbose=0).history
    assert logs["scaled_graph_loss"] == [0.0]
    assert logs["scaled_adversarial_loss"][0] > 0
    assert_allclose(model.predict(X, verbose=0), base(X), rtol=1e-5)


def test_bad_terms():
    with pytest.raises(TypeError, match="`terms` must hold nsl.keras.terms"):
        RegularizedModel(_base(), terms=["adversarial"])
    with pytest.raises(ValueError, match="same metric"):
        RegularizedModel(_base(), terms=[_adversarial(), _adversarial()])
    named = terms.AdversarialTerm(nsl.configs.make_adv_reg_config(
        multiplier=0.2, adv_step_size=0.3, adv_grad_norm="l2"),
        name="scaled_adversarial_loss_2")
    model = RegularizedModel(_base(), terms=[_adversarial(), named])
    assert [t.name for t in model.terms] == ["scaled_adversarial_loss",
                                             "scaled_adversarial_loss_2"]
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    logs = model.train_on_batch(X, Y, return_dict=True)
    assert logs["scaled_adversarial_loss"] > 0
    assert_allclose(logs["scaled_adversarial_loss_2"],
                    logs["scaled_adversarial_loss"] / 0.7 * 0.2, rtol=1e-5)


def test_slot_survives_copies():
    # The per-thread slot is not copied (nor pickled) with a model.
    import copy  # pylint: disable=import-outside-toplevel
    slot = regularized_model._Slot()  # pylint: disable=protected-access
    slot.step = "something"
    assert copy.deepcopy(slot).step is None


def test_adversarial_gradient_comes_from_the_clean_pass_next_to_a_graph_term(
        monkeypatch):
    # As when alone (NSL 1.4): with a batched graph term adding neighbour
    # rows to the clean pass, FGSM still starts from that pass's input
    # gradient (its dropout mask), not from a scratch pass.
    from neural_structured_learning.lib import gradients  # pylint: disable=import-outside-toplevel
    scratch = []
    original = gradients.value_and_input_gradients

    def spy(fn, xs):
        scratch.append(1)
        return original(fn, xs)

    monkeypatch.setattr(gradients, "value_and_input_gradients", spy)
    inputs = keras.Input((_D,), name="x")
    hidden = keras.layers.Dense(5, "relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(_C)(keras.layers.Dropout(0.5)(hidden))
    model = RegularizedModel(keras.Model(inputs, outputs),
                             terms=[_graph(), _adversarial()])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), run_eagerly=True)
    x = {"x": X, **NBR}
    logs = model.train_on_batch(x, Y, return_dict=True)
    assert not scratch
    assert logs["scaled_adversarial_loss"] > 0
    model.compute_loss(x, Y, model.base_model(X), training=False)
    assert len(scratch) == 1  # compute_loss alone: a scratch pass.
