"""Tests for virtual_adversarial_regularization.py."""

import os

import keras
import numpy as np
import pytest
from keras import ops

import neural_structured_learning as nsl
from neural_structured_learning._testing import assert_allclose
from neural_structured_learning._testing import to_numpy
from neural_structured_learning.keras import virtual_adversarial_regularization as vat_lib
from neural_structured_learning.lib import distances
from neural_structured_learning.lib import regularizer

W = np.array([[1., -2., .5], [.3, .8, -1.]], "float32")
X = np.array([[1., 2.], [-1., .5], [.2, -.3], [2., 1.]], "float32")


def linear_classifier(softmax=False):
    inputs = keras.Input((2,), name="x")
    layer = keras.layers.Dense(3, use_bias=False,
                               activation="softmax" if softmax else None,
                               kernel_initializer=keras.initializers.Constant(
                                   W))
    return keras.Model(inputs, layer(inputs))


def vat_config(epsilon=0.5, xi=0.1, steps=1):
    return nsl.configs.VirtualAdvConfig(
        nsl.configs.AdvNeighborConfig(adv_step_size=epsilon),
        nsl.configs.DistanceConfig("kl_divergence", sum_over_axis=-1),
        num_approx_steps=steps, approx_difference=xi)


def wrap(model=None, from_logits=True, **kwargs):
    model = model or linear_classifier()
    vat = nsl.keras.VirtualAdversarialRegularization(
        model, vat_config=kwargs.pop("config", vat_config()), **kwargs)
    vat.compile(keras.optimizers.SGD(0.1),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=from_logits),
                metrics=["accuracy"])
    return vat


def test_kl_from_logits_matches_probabilities():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 5, 4)).astype("float32")
    p, q = (to_numpy(ops.softmax(ops.convert_to_tensor(v))) for v in (a, b))
    expected = np.sum(p * (np.log(p) - np.log(q)), -1)
    assert_allclose(distances.kl_divergence_from_outputs(a, b), expected,
                    rtol=1e-5)
    assert_allclose(distances.kl_divergence_from_outputs(p, q, False),
                    expected, rtol=1e-4)
    # Binary outputs [batch, 1] are Bernoulli logits.
    z1, z2 = np.array([[0.5]], "float32"), np.array([[-1.]], "float32")
    s1, s2 = 1 / (1 + np.exp(-0.5)), 1 / (1 + np.exp(1.))
    bernoulli = s1 * np.log(s1 / s2) + (1 - s1) * np.log((1 - s1) / (1 - s2))
    assert_allclose(distances.kl_divergence_from_outputs(z1, z2),
                    [bernoulli], rtol=1e-5)
    assert_allclose(distances.entropy_from_outputs(
        np.zeros((1, 4), "float32")), [np.log(4.)], rtol=1e-6)


def test_kl_from_logits_is_precise_when_probabilities_saturate():
    a = np.array([[12., 0., 0.]])
    b = a + np.array([[0., .5, -.5]])

    def log_softmax(z):
        return z - np.log(np.exp(z - z.max()).sum()) - z.max()

    p = np.exp(log_softmax(a))
    expected = np.sum(p * (log_softmax(a) - log_softmax(b)))  # float64.
    ours = to_numpy(distances.kl_divergence_from_outputs(
        a.astype("float32"), b.astype("float32")))[0]
    assert abs(ours - expected) / expected < 1e-3


def test_vat_loss_matches_the_library_regularizer():
    vat = wrap()
    direction = np.random.default_rng(1).normal(size=X.shape).astype(
        "float32")
    model = vat.base_model
    ours = vat.vat_loss({"x": X}, model(X), from_logits=True,
                        initial_direction=[ops.convert_to_tensor(direction)])
    # The library's KL works on probabilities: give it a softmax model.
    lib_probs = regularizer.virtual_adv_regularizer(
        ops.convert_to_tensor(X), lambda v: ops.softmax(model(v)),
        vat_config(), initial_direction=ops.convert_to_tensor(direction))
    assert_allclose(ours, lib_probs, rtol=1e-4)
    assert float(to_numpy(ours)) > 0


def test_vat_direction_is_the_top_eigenvector():
    # For a linear model and tiny xi, the power iteration converges to the
    # top eigenvector of the KL's Hessian in x, A = W diag-cov(p) W^T: with
    # many steps the final KL equals 0.5 * eps^2 * lambda_max (to 2nd order).
    vat = wrap(config=vat_config(epsilon=1e-2, xi=1e-2, steps=30))
    x = X[:1]
    logits = x @ W
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    hessian = W @ (np.diag(p[0]) - np.outer(p[0], p[0])) @ W.T
    expected = 0.5 * 1e-4 * np.linalg.eigvalsh(hessian).max()
    loss = vat.vat_loss({"x": x}, vat.base_model(x))
    assert_allclose(loss, expected, rtol=2e-2)


class TestTraining:

    def test_supervised_loss_uses_labeled_rows_only(self):
        vat = wrap(multiplier=0.0)
        y = np.array([2, -1, -1, 0], "int32")
        result = vat.evaluate(X, y, verbose=0, return_dict=True)
        logits = X @ W
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        expected = -(log_p[0, 2] + log_p[3, 0]) / 2
        assert_allclose(result["loss"], expected, rtol=1e-5)
        assert_allclose(result["sparse_categorical_crossentropy"], expected,
                        rtol=1e-5)
        accuracy = np.mean([np.argmax(logits[0]) == 2,
                            np.argmax(logits[3]) == 0])
        assert_allclose(result["accuracy"], accuracy)

    def test_label_mask_key_and_unlabeled_batches(self):
        vat = wrap(multiplier=0.0, label_mask_key="labeled")
        data = {"x": X, "label": np.array([2, 1, 1, 0], "int32"),
                "labeled": np.array([1., 0., 0., 1.], "float32")}
        masked = vat.evaluate(data, verbose=0, return_dict=True)
        plain = wrap(multiplier=0.0).evaluate(
            X, np.array([2, -1, -1, 0], "int32"), verbose=0,
            return_dict=True)
        assert_allclose(masked["loss"], plain["loss"], rtol=1e-6)
        unlabeled = wrap().evaluate(X, np.full(4, -1, "int32"), verbose=0,
                                    return_dict=True)
        assert unlabeled["scaled_vat_loss"] > 0
        assert_allclose(unlabeled["loss"], unlabeled["scaled_vat_loss"],
                        rtol=1e-5)

    @pytest.mark.parametrize("shape", [(4,), (4, 1)])
    def test_float_labels_mark_unlabeled_rows_with_minus_one(self, shape):
        y_int = np.array([2, -1, -1, 0], "int32")
        y_float = y_int.astype("float32").reshape(shape)
        plain = wrap(seed=1).evaluate(X, y_int, verbose=0, return_dict=True)
        floats = wrap(seed=1).evaluate(X, y_float, verbose=0,
                                       return_dict=True)
        assert np.isfinite(floats["loss"])
        assert_allclose(floats["loss"], plain["loss"], rtol=1e-5)
        # One training step moves the weights as with integer labels.
        kernels = []
        for y in (y_int, y_float):
            model = linear_classifier()
            wrap(model, multiplier=0.0).fit(X, y, batch_size=4, verbose=0)
            kernels.append(to_numpy(model.trainable_variables[0]))
        assert np.all(np.isfinite(kernels[1]))
        assert_allclose(kernels[1], kernels[0], rtol=1e-5, atol=1e-6)

    def test_one_hot_rows_of_minus_one_are_unlabeled(self):
        y_int = np.array([2, -1, -1, 0], "int32")
        one_hot = np.eye(3, dtype="float32")[np.maximum(y_int, 0)]
        one_hot[y_int < 0] = -1.0
        dense = nsl.keras.VirtualAdversarialRegularization(
            linear_classifier(), vat_config=vat_config(), multiplier=0.0)
        dense.compile(keras.optimizers.SGD(0.1),
                      loss=keras.losses.CategoricalCrossentropy(
                          from_logits=True))
        result = dense.evaluate(X, one_hot, verbose=0, return_dict=True)
        plain = wrap(multiplier=0.0).evaluate(X, y_int, verbose=0,
                                              return_dict=True)
        assert_allclose(result["loss"], plain["loss"], rtol=1e-5)

    @pytest.mark.parametrize("softmax", [False, True])
    def test_fit_reduces_loss_from_logits_or_probabilities(self, softmax):
        keras.utils.set_random_seed(0)
        vat = wrap(linear_classifier(softmax), from_logits=not softmax,
                   entropy_weight=0.1)
        x = np.tile(X, (8, 1))
        y = np.tile(np.array([2, -1, 1, 0], "int32"), 8)
        history = vat.fit(x, y, batch_size=16, epochs=5, verbose=0).history
        assert {"scaled_vat_loss", "scaled_entropy"} <= set(history)
        assert history["loss"][-1] < history["loss"][0]

    def test_save_and_load(self, tmp_path):
        vat = wrap(entropy_weight=0.5, label_mask_key="m",
                   perturbed_pass_training=False)
        path = os.path.join(tmp_path, "vat.keras")
        vat.save(path)
        loaded = keras.saving.load_model(path)
        assert loaded.vat_config == vat.vat_config
        assert (loaded.entropy_weight, loaded.label_mask_key,
                loaded.perturbed_pass_training) == (0.5, "m", False)
        assert_allclose(loaded.predict(X, verbose=0), X @ W, rtol=1e-6)


def _softmax_entropy(logits):
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return float(np.mean(-(p * np.log(p)).sum(-1)))


@pytest.mark.parametrize("rampup", [0, 4])
def test_entropy_rampup_scales_the_entropy_term_by_epoch(rampup):
    # A frozen model (learning rate 0), one batch per epoch: the logged
    # entropy term is exactly weight * ramp(epoch) * H.
    vat = nsl.keras.VirtualAdversarialRegularization(
        linear_classifier(), vat_config=vat_config(), entropy_weight=0.5,
        entropy_rampup_epochs=rampup)
    vat.compile(keras.optimizers.SGD(0.0),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True))
    y = np.array([2, -1, 1, 0], "int32")
    history = vat.fit(X, y, batch_size=4, epochs=6, verbose=0).history
    ramp = ([np.exp(-5 * (1 - min(e / rampup, 1)) ** 2) for e in range(6)]
            if rampup else [1.0] * 6)
    if rampup:
        assert_allclose(history["entropy_ramp"], ramp, rtol=1e-6)
        assert_allclose(ramp[:2], [np.exp(-5), np.exp(-5 * 0.75 ** 2)])
        assert float(to_numpy(vat.entropy_ramp)) == 1.0
    else:
        assert "entropy_ramp" not in history and vat.entropy_ramp is None
    assert_allclose(history["scaled_entropy"],
                    0.5 * np.array(ramp) * _softmax_entropy(X @ W),
                    rtol=1e-5)


def test_entropy_rampup_joins_a_callback_list_once():
    vat = wrap(entropy_weight=0.5, entropy_rampup_epochs=4)
    callbacks = keras.callbacks.CallbackList([], add_history=True, model=vat)
    y = np.array([2, -1, 1, 0], "int32")
    for epochs in (3, 2):
        history = vat.fit(X, y, batch_size=4, epochs=epochs, verbose=0,
                          callbacks=callbacks).history
        # (A user's History keeps the logs of every fit.)
        assert_allclose(history["entropy_ramp"][-epochs:],
                        [np.exp(-5 * (1 - e / 4) ** 2) for e in range(epochs)],
                        rtol=1e-6)
        assert_allclose(to_numpy(vat.entropy_ramp),
                        np.exp(-5 * (1 - (epochs - 1) / 4) ** 2), rtol=1e-6)
    assert sum(type(c).__name__ == "EntropyRampUp"
               for c in callbacks.callbacks) == 1


def test_entropy_rampup_is_saved(tmp_path):
    vat = wrap(entropy_weight=0.5, entropy_rampup_epochs=3)
    vat.fit(X, np.array([2, -1, 1, 0], "int32"), batch_size=4, epochs=1,
            verbose=0)
    path = os.path.join(tmp_path, "vat.keras")
    vat.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.entropy_rampup_epochs == 3
    assert_allclose(to_numpy(loaded.entropy_ramp), np.exp(-5), rtol=1e-6)


@pytest.mark.parametrize("value", [-1, 1.5, True, "3"])
def test_entropy_rampup_epochs_must_be_a_count(value):
    with pytest.raises(ValueError, match=r"`entropy_rampup_epochs` must be "
                                         r"an integer >= 0"):
        nsl.keras.VirtualAdversarialRegularization(
            linear_classifier(), entropy_weight=0.1,
            entropy_rampup_epochs=value)


def test_labeled_unlabeled_batches():
    x_lab = np.arange(6, dtype="float32")[:, None]
    y_lab = np.arange(6) % 3
    x_unlab = 100 + np.arange(20, dtype="float32")[:, None]
    batches = nsl.keras.LabeledUnlabeledBatches(x_lab, y_lab, x_unlab, 4, 5,
                                                seed=3)
    assert len(batches) == 4
    seen = []
    for i in range(len(batches)):
        x, y = batches[i]
        assert x.shape == (9, 1) and y.shape == (9,)
        np.testing.assert_array_equal(y[4:], -1)
        np.testing.assert_array_equal(y[:4], x[:4, 0].astype(int) % 3)
        seen.extend(x[4:, 0])
    assert sorted(seen) == list(100 + np.arange(20.))  # One pass.
    again = nsl.keras.LabeledUnlabeledBatches(x_lab, y_lab, x_unlab, 4, 5,
                                              seed=3)
    np.testing.assert_array_equal(again[1][0], batches[1][0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(labeled_batch_size=0),
     r"`labeled_batch_size` must be an integer >= 1\. Received: "
     r"labeled_batch_size=0"),
    (dict(unlabeled_batch_size=-5),
     r"`unlabeled_batch_size` must be an integer >= 1\. Received: "
     r"unlabeled_batch_size=-5"),
    (dict(unlabeled_batch_size=2.5), r"`unlabeled_batch_size` must be an "
                                     r"integer >= 1"),
    (dict(x_unlabeled=np.zeros((20, 3), "float32")),
     r"`x_unlabeled` rows have shape \(3,\), but `x_labeled` rows have "
     r"shape \(1,\)"),
    (dict(y_labeled=np.array([0, 1, -1, 2, 0, 1])),
     r"`y_labeled` holds the unlabeled marker unlabeled_label=-1 in 1 "
     r"row\(s\) \(e.g. row 2\)"),
])
def test_labeled_unlabeled_batches_check_their_arguments(kwargs, match):
    args = dict(x_labeled=np.zeros((6, 1), "float32"),
                y_labeled=np.arange(6) % 3,
                x_unlabeled=np.zeros((20, 1), "float32"))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        nsl.keras.LabeledUnlabeledBatches(**args)


def test_labeled_unlabeled_batches_check_dict_features():
    y = np.arange(6) % 3
    x = {"a": np.zeros((6, 2), "float32"), "b": np.zeros((6, 1), "float32")}
    with pytest.raises(ValueError, match=r"`x_labeled` and `x_unlabeled` "
                       r"must have the same keys\. Only in x_labeled: "
                       r"\['b'\]; only in x_unlabeled: \['c'\]"):
        nsl.keras.LabeledUnlabeledBatches(
            x, y, {"a": np.zeros((9, 2)), "c": np.zeros((9, 1))})
    with pytest.raises(ValueError, match=r"`x_unlabeled\['b'\]` rows have "
                       r"shape \(4,\), but `x_labeled\['b'\]` rows have "
                       r"shape \(1,\)"):
        nsl.keras.LabeledUnlabeledBatches(
            x, y, {"a": np.zeros((9, 2)), "b": np.zeros((9, 4))})
    with pytest.raises(ValueError, match=r"must both be dicts or both"):
        nsl.keras.LabeledUnlabeledBatches(x, y, np.zeros((9, 3)))
    batches = nsl.keras.LabeledUnlabeledBatches(
        x, y, {"a": np.ones((9, 2), "float32"),
               "b": np.ones((9, 1), "float32")}, 2, 3)
    assert batches[0][0]["a"].shape == (5, 2)


class TestErrors:

    def test_no_labels(self):
        vat = wrap()
        with pytest.raises(ValueError, match=r"Labels are not in the input"):
            vat.fit({"x": X}, batch_size=4, verbose=0)

    def test_mask_shape(self):
        vat = wrap(label_mask_key="m")
        with pytest.raises(ValueError, match=r"The label mask 'm' must have "
                                             r"shape \[batch\] or \[batch, "
                                             r"1\]"):
            vat.evaluate({"x": X, "label": np.zeros(4, "int32"),
                          "m": np.ones((4, 2), "float32")}, verbose=0)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match=r"`approx_difference` \(the "
                                             r"finite-difference step xi\) "
                                             r"must be > 0"):
            vat_config(xi=0.0)
        with pytest.raises(ValueError, match=r"`multiplier` must be >= 0"):
            nsl.keras.VirtualAdversarialRegularization(linear_classifier(),
                                                       multiplier=-1.0)
        with pytest.raises(ValueError, match=r"takes one label key"):
            nsl.keras.VirtualAdversarialRegularization(
                linear_classifier(), label_keys=["a", "b"])
        with pytest.raises(TypeError, match=r"`vat_config` must be an "
                                            r"nsl.configs.VirtualAdvConfig"):
            nsl.keras.VirtualAdversarialRegularization(
                linear_classifier(), vat_config=nsl.configs.AdvRegConfig())

    def test_integer_features(self):
        inputs = keras.Input((2,), name="x", dtype="int32")
        out = keras.layers.Dense(3)(ops.cast(inputs, "float32"))
        vat = wrap(keras.Model(inputs, out))
        with pytest.raises(ValueError, match=r"No feature can be perturbed"):
            vat.fit({"x": np.ones((4, 2), "int32"),
                     "label": np.zeros(4, "int32")}, verbose=0)


def test_default_config_is_usable():
    assert nsl.keras.default_vat_config is vat_lib.default_vat_config
    config = vat_lib.default_vat_config()
    assert config.adv_neighbor_config.adv_step_size == 1.0
    assert config.distance_config.distance_type == "kl_divergence"
    assert config.approx_difference == 1e-3


def test_only_the_clean_pass_updates_batchnorm_statistics():
    inputs = keras.Input((2,), name="x")
    dense = keras.layers.Dense(3)
    norm = keras.layers.BatchNormalization(momentum=0.0)
    model = keras.Model(inputs, keras.layers.Dense(3)(norm(dense(inputs))))
    vat = wrap(model, config=vat_config(epsilon=5.0))
    kernel, bias = (to_numpy(v).copy() for v in (dense.kernel, dense.bias))
    vat.fit(X, np.full(4, -1, "int32"), batch_size=4, verbose=0)
    # Momentum 0: the moving mean is the batch mean of the last pass that
    # updated it, here the clean pass (before the weight update).
    assert_allclose(norm.moving_mean, (X @ kernel + bias).mean(0), rtol=1e-5)


def batchnorm_classifier():
    inputs = keras.Input((2,), name="x")
    hidden = keras.layers.Dense(8, use_bias=False, kernel_initializer=(
        keras.initializers.RandomNormal(stddev=1.0, seed=0)))(inputs)
    hidden = keras.layers.BatchNormalization()(hidden)
    hidden = keras.layers.Activation("relu")(hidden)
    return keras.Model(inputs, keras.layers.Dense(3, kernel_initializer=(
        keras.initializers.RandomNormal(stddev=1.0, seed=1)))(hidden))


@pytest.mark.parametrize("training,coupled", [(True, True), (False, False)])
def test_batch_statistics_couple_the_rows_of_the_vat_loss(training, coupled):
    # The cause of VAT alone collapsing on MNIST with 100 labels
    # (docs/vat.md): with batch statistics in the perturbed passes, each
    # row's perturbed prediction is normalised by the whole perturbed
    # batch's mean and variance, so the VAT loss's gradient reaches the
    # weights through those statistics, and VAT flattens every prediction
    # (validation accuracy fell below the labeled-only model's). In
    # inference mode, the default, each row's VAT loss depends on that row
    # only: the loss of a batch is the mean of its halves' losses.
    vat = wrap(batchnorm_classifier(), config=vat_config(epsilon=1.0))
    x = np.random.default_rng(2).normal(size=(8, 2)).astype("float32")
    d = np.random.default_rng(3).normal(size=x.shape).astype("float32")

    def loss(rows):
        predictions = vat.base_model(x[rows], training=training)
        return float(to_numpy(vat.vat_loss(
            {"x": x[rows]}, predictions, training=training,
            initial_direction=[ops.convert_to_tensor(d[rows])])))

    whole = loss(slice(0, 8))
    halves = (loss(slice(0, 4)) + loss(slice(4, 8))) / 2
    assert whole > 0
    if coupled:
        assert abs(whole - halves) > 0.05 * whole
    else:
        assert_allclose(whole, halves, rtol=1e-4)


def test_default_perturbed_passes_run_in_inference_mode():
    assert wrap().perturbed_pass_training is False
    assert nsl.keras.terms.VirtualAdversarialTerm().perturbed_pass_training \
        is False


@pytest.mark.parametrize("option,expected", [(None, True), (False, False),
                                             (True, True)])
def test_perturbed_pass_training_mode(option, expected):
    # The power-iteration and perturbed passes run in inference mode
    # (BatchNormalization's moving statistics) by default
    # (perturbed_pass_training=False), in the step's own mode with None.
    vat = wrap(perturbed_pass_training=option)
    seen = []
    original = vat.vat_term.divergence

    def spy(model, features, predictions, training=False, **kwargs):
        seen.append(training)
        return original(model, features, predictions, training=training,
                        **kwargs)

    vat.vat_term.divergence = spy
    vat.fit({"x": X, "label": np.zeros(4, "int32")}, batch_size=4, verbose=0)
    assert seen and set(seen) == {expected}
    with pytest.raises(ValueError, match="`perturbed_pass_training` must be"):
        wrap(perturbed_pass_training="yes")
