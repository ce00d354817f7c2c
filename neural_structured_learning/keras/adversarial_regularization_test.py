"""Tests for adversarial_regularization.py.

The exact values are NSL 1.4's test vectors (reference §9.2 F): a linear
model `w = [[4], [-3]]`, `x = [[2, 3]]`, `y = 0`, MSE, FGSM with step 0.01 in
the infinity norm, multiplier 0.2 and SGD with learning rate 0.01.
"""

import os

import keras
import numpy as np
import pytest
from keras import ops

import neural_structured_learning as nsl
from neural_structured_learning._testing import assert_allclose
from neural_structured_learning._testing import to_numpy

BACKEND = keras.config.backend()
JIT_MODES = [False, True] if BACKEND in ("tensorflow", "jax") else [False]
X0 = np.array([[2., 3.]], "float32")
Y0 = np.array([[0.]], "float32")


def linear_model(weights=((4.,), (-3.,)), name="feature", kind="functional"):
    init = keras.initializers.Constant(np.array(weights, "float32"))
    dense = keras.layers.Dense(1, use_bias=False, kernel_initializer=init)
    if kind == "sequential":
        return keras.Sequential([keras.Input((2,), name=name), dense])
    if kind == "subclassed":
        return SubclassedModel(dense, name)
    inputs = keras.Input((2,), name=name)
    return keras.Model(inputs, dense(inputs))


class SubclassedModel(keras.Model):

    def __init__(self, dense, key):
        super().__init__()
        self.dense, self.key = dense, key

    def call(self, inputs):
        return self.dense(inputs[self.key])


def adv_config(**kwargs):
    kwargs.setdefault("multiplier", 0.2)
    kwargs.setdefault("adv_step_size", 0.01)
    kwargs.setdefault("adv_grad_norm", "infinity")
    return nsl.configs.make_adv_reg_config(**kwargs)


def wrap(model, jit=False, loss="MSE", metrics=None, lr=0.01, **kwargs):
    config = kwargs.pop("config", None) or adv_config()
    adv = nsl.keras.AdversarialRegularization(model, adv_config=config,
                                              **kwargs)
    adv.compile(keras.optimizers.SGD(lr), loss=loss, metrics=metrics,
                jit_compile=jit)
    return adv


def kernel(model):
    return model.trainable_weights[0].numpy() if hasattr(
        model.trainable_weights[0], "numpy") else to_numpy(
            model.trainable_weights[0])


class TestOneStep:

    @pytest.mark.parametrize("jit", JIT_MODES)
    @pytest.mark.parametrize("kind", ["functional", "sequential",
                                      "subclassed"])
    def test_fgsm_step(self, kind, jit):
        model = linear_model(kind=kind)
        adv = wrap(model, jit)
        adv.fit({"feature": X0, "label": Y0}, batch_size=1, verbose=0)
        assert_allclose(kernel(model), [[4.0485172], [-2.9271172]],
                        rtol=1e-6)

    def test_sample_weight_key(self):
        model = linear_model()
        adv = wrap(model, sample_weight_key="weight")
        adv.fit({"feature": X0, "label": Y0,
                 "weight": np.array([[2.]], "float32")}, batch_size=1,
                verbose=0)
        assert_allclose(kernel(model), [[4.0970344], [-2.8542344]],
                        rtol=1e-6)

    @pytest.mark.parametrize("jit", JIT_MODES)
    def test_pgd_step(self, jit):
        model = linear_model()
        adv = wrap(model, jit, config=adv_config(pgd_iterations=3,
                                                 pgd_epsilon=0.025))
        adv.fit({"feature": X0, "label": Y0}, batch_size=1, verbose=0)
        assert_allclose(kernel(model), [[4.0492825], [-2.9257825]],
                        rtol=1e-6)

    def test_loss_object(self):
        model = linear_model()
        adv = wrap(model, loss=keras.losses.MeanSquaredError())
        adv.fit({"feature": X0, "label": Y0}, batch_size=1, verbose=0)
        assert_allclose(kernel(model), [[4.0485172], [-2.9271172]],
                        rtol=1e-6)

    def test_two_inputs_either_key_order(self):
        # 1.4: MAE, L2 step 0.1, multiplier 1, SGD 0.001.
        for order in (("x1", "x2"), ("x2", "x1")):
            x1 = keras.Input((1,), name="x1")
            x2 = keras.Input((2,), name="x2")
            d1 = keras.layers.Dense(1, use_bias=False, kernel_initializer=(
                keras.initializers.Constant([[2.]])))
            d2 = keras.layers.Dense(1, use_bias=False, kernel_initializer=(
                keras.initializers.Constant([[3.], [6.]])))
            model = keras.Model([x1, x2], keras.layers.Add()([d1(x1),
                                                               d2(x2)]))
            adv = wrap(model, loss="MAE", lr=0.001, config=adv_config(
                multiplier=1.0, adv_step_size=0.1, adv_grad_norm="l2"))
            data = {"x1": np.array([[1.]], "float32"),
                    "x2": np.array([[4., 5.]], "float32"),
                    "label": np.array([[0.]], "float32")}
            neighbor = adv.perturb_on_batch(data)
            assert_allclose(neighbor["x1"], [[1.0285714]], rtol=1e-6)
            assert_allclose(neighbor["x2"], [[4.0428571, 5.0857143]],
                            rtol=1e-6)
            adv.fit({k: data[k] for k in order + ("label",)}, batch_size=1,
                    verbose=0)
            assert_allclose(to_numpy(d1.kernel), [[1.9979714]], rtol=1e-6)
            assert_allclose(to_numpy(d2.kernel), [[2.9919571], [5.9899143]],
                            rtol=1e-6)


class TestData:
    """Plain Keras data forms train exactly like 1.4's feature dict."""

    expected = [[4.0485172], [-2.9271172]]

    def fit_and_check(self, *args, **kwargs):
        model = linear_model()
        adv = wrap(model)
        adv.fit(*args, verbose=0, **kwargs)
        assert_allclose(kernel(model), self.expected, rtol=1e-6)
        return adv

    def test_arrays(self):
        self.fit_and_check(X0, Y0, batch_size=1)
        self.fit_and_check({"feature": X0}, Y0, batch_size=1)

    def test_sample_weight_argument(self):
        model = linear_model()
        adv = wrap(model)
        adv.fit(X0, Y0, sample_weight=np.array([2.], "float32"),
                batch_size=1, verbose=0)
        assert_allclose(kernel(model), [[4.0970344], [-2.8542344]],
                        rtol=1e-6)

    def test_tf_data(self):
        tf = pytest.importorskip("tensorflow")
        self.fit_and_check(tf.data.Dataset.from_tensor_slices(
            ({"feature": X0, "label": Y0},)).batch(1))
        self.fit_and_check(tf.data.Dataset.from_tensor_slices(
            (X0, Y0)).batch(1))

    def test_py_dataset(self):
        class Batches(keras.utils.PyDataset):
            def __len__(self):
                return 1

            def __getitem__(self, index):
                return {"feature": X0, "label": Y0}

        self.fit_and_check(Batches())

    def test_torch_data_loader(self):
        torch = pytest.importorskip("torch")
        dataset = torch.utils.data.TensorDataset(torch.tensor(X0),
                                                 torch.tensor(Y0))
        self.fit_and_check(torch.utils.data.DataLoader(dataset,
                                                       batch_size=1))

    def test_predict_without_labels(self):
        adv = self.fit_and_check(X0, Y0, batch_size=1)
        expected = X0 @ np.array(self.expected, "float32")
        assert_allclose(adv.predict({"feature": X0}, verbose=0), expected,
                        rtol=1e-6)
        assert_allclose(adv.predict(X0, verbose=0), expected, rtol=1e-6)
        assert_allclose(adv.predict({"feature": X0, "label": Y0}, verbose=0),
                        expected, rtol=1e-6)


class TestMetrics:

    def test_names_and_values_as_in_1_4(self):
        adv = wrap(linear_model(), metrics=["MSE", "mae", "MSE"])
        history = adv.fit({"feature": X0, "label": Y0}, batch_size=1,
                          verbose=0).history
        # 1.4's names (the labeled loss is `mean_squared_error`, the metrics
        # `mean_squared_error_2`, `mean_absolute_error`, ..._3), and each
        # metric under Keras's name too (the one rule of all wrappers).
        assert sorted(history) == [
            "MSE", "MSE_2", "loss", "mae", "mean_absolute_error",
            "mean_squared_error", "mean_squared_error_2",
            "mean_squared_error_3", "scaled_adversarial_loss"]
        # Before the step: prediction -1, adversarial prediction -1.07.
        for name in ("mean_squared_error", "mean_squared_error_2", "MSE",
                     "MSE_2", "mean_absolute_error", "mae"):
            assert_allclose(history[name], [1.0], rtol=1e-6)
        assert_allclose(history["scaled_adversarial_loss"], [0.2 * 1.1449],
                        rtol=1e-5)
        assert_allclose(history["loss"], [1.0 + 0.2 * 1.1449], rtol=1e-5)

    def test_binary_accuracy_and_crossentropy(self):
        x = keras.Input((2,), name="feature")
        dense = keras.layers.Dense(3, "sigmoid", use_bias=False,
                                   kernel_initializer=(
                                       keras.initializers.Constant(
                                           [[4., 1., -5.], [-3., 1., 2.]])))
        adv = wrap(keras.Model(x, dense(x)), loss="binary_crossentropy",
                   metrics=["accuracy", "ce"], lr=0.0)
        # Predictions sigmoid([-1, 5, -4]) = [.26894, .99331, .01799].
        result = adv.evaluate({"feature": X0,
                               "label": np.array([[0., 1., 1.]], "float32")},
                              verbose=0, return_dict=True)
        assert_allclose(result["binary_accuracy"], 2 / 3, rtol=1e-6)
        assert_allclose(result["binary_crossentropy"], 1.446042, rtol=1e-4)
        assert_allclose(result["accuracy"], 2 / 3, rtol=1e-6)
        assert_allclose(result["ce"], 1.446042, rtol=1e-4)

    def test_sparse_categorical(self):
        x = keras.Input((1,), name="feature")
        dense = keras.layers.Dense(3, "softmax", use_bias=False,
                                   kernel_initializer=(
                                       keras.initializers.Constant(
                                           [[-1., 5., -4.]])))
        adv = wrap(keras.Model(x, dense(x)),
                   loss="sparse_categorical_crossentropy",
                   metrics=["accuracy"], lr=0.0)
        result = adv.evaluate({"feature": np.array([[1.]], "float32"),
                               "label": np.array([1])}, verbose=0,
                              return_dict=True)
        assert_allclose(result["sparse_categorical_accuracy"], 1.0)
        assert_allclose(result["accuracy"], 1.0)
        assert_allclose(result["sparse_categorical_crossentropy"],
                        0.0025988, rtol=1e-3)

    def test_two_outputs_are_suffixed_by_label_key(self):
        x = keras.Input((2,), name="feature")
        out1 = keras.layers.Dense(1, name="out1")(x)
        out2 = keras.layers.Dense(1, name="out2")(x)
        adv = wrap(keras.Model(x, [out1, out2]), loss="mae",
                   label_keys=["label1", "label2"])
        history = adv.fit({"feature": X0, "label1": Y0, "label2": Y0},
                          batch_size=1, verbose=0).history
        assert {"mean_absolute_error_label1",
                "mean_absolute_error_label2"} <= set(history)


class TestAdversarialLossFunction:

    def test_value(self):
        model = linear_model()
        loss = nsl.keras.adversarial_loss(
            {"feature": X0}, Y0, model, keras.losses.MeanSquaredError(),
            adv_config=adv_config())
        assert_allclose(loss, 1.1449, rtol=1e-5)

    def test_sample_weights_divide_by_batch_size(self):
        # 1.4: weights [[1], [3]] give 4 * 1.1449 / 2. 1-D weights now work
        # too (1.4 broadcast them to [B, B] and failed).
        x = np.array([[2., 3.], [2., 3.]], "float32")
        y = np.zeros((2, 1), "float32")
        for weights in ([[1.], [3.]], [1., 3.]):
            loss = nsl.keras.adversarial_loss(
                x, y, linear_model(), keras.losses.MeanSquaredError(),
                sample_weights=np.array(weights, "float32"),
                adv_config=adv_config())
            assert_allclose(loss, 2.28980, rtol=1e-5)

    def test_training_kwarg_reaches_the_model(self):
        inputs = keras.Input((2,), name="feature")
        model = keras.Model(inputs, keras.layers.BatchNormalization()(inputs))
        loss = nsl.keras.adversarial_loss(
            {"feature": np.array([[1., 2.], [3., 4.]], "float32")},
            np.zeros((2, 2), "float32"), model,
            keras.losses.MeanSquaredError(), adv_config=adv_config(),
            model_kwargs={"training": True})
        # Batch-normalised in training mode, the perturbed batch is still
        # exactly zero-mean unit-variance: loss 1 (1.4: BN model gives 0 for
        # a zero target with its tiny epsilon; here targets are zeros).
        assert_allclose(loss, 1.0, rtol=1e-3)


class TestPerturbOnBatch:

    def test_values(self):
        adv = wrap(linear_model())
        batch = {"feature": X0, "label": Y0}
        out = adv.perturb_on_batch(batch)
        assert_allclose(out["feature"], [[1.99, 3.01]], rtol=1e-6)
        assert_allclose(out["label"], Y0)
        assert_allclose(adv.perturb_on_batch(batch, adv_step_size=0.2)[
            "feature"], [[1.8, 3.2]], rtol=1e-6)
        assert_allclose(adv.perturb_on_batch(
            batch, pgd_iterations=5, pgd_epsilon=0.045)["feature"],
            [[1.955, 3.045]], rtol=1e-6)
        assert_allclose(adv.perturb_on_batch(X0, Y0), [[1.99, 3.01]],
                        rtol=1e-6)


class TestModelsWithState:

    def cnn(self):
        inputs = keras.Input((8, 8, 1), name="image")
        h = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.Dropout(0.3)(h)
        h = keras.layers.Flatten()(h)
        return keras.Model(inputs, keras.layers.Dense(3)(h))

    @pytest.mark.parametrize("jit", JIT_MODES)
    def test_batchnorm_dropout_fit_evaluate_predict(self, jit):
        keras.utils.set_random_seed(0)
        model = self.cnn()
        adv = nsl.keras.AdversarialRegularization(
            model, label_keys=["y"], adv_config=nsl.configs.make_adv_reg_config(
                adv_step_size=0.1, pgd_iterations=2, pgd_epsilon=0.1))
        adv.compile("adam", keras.losses.SparseCategoricalCrossentropy(
            from_logits=True), metrics=["accuracy"], jit_compile=jit)
        x = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
        y = np.arange(16) % 3
        moving_mean = model.layers[2].moving_mean
        before = to_numpy(moving_mean).copy()
        history = adv.fit({"image": x, "y": y}, batch_size=8, epochs=2,
                          verbose=0).history
        assert np.all(np.isfinite(history["loss"]))
        assert not np.allclose(to_numpy(moving_mean), before)
        result = adv.evaluate({"image": x, "y": y}, verbose=0,
                              return_dict=True)
        assert result["scaled_adversarial_loss"] > 0
        assert adv.predict({"image": x}, verbose=0).shape == (16, 3)


@pytest.mark.parametrize("jit", JIT_MODES)
@pytest.mark.parametrize("regularizer", ["kernel", "activity"])
def test_fused_clean_pass_equals_unfused(jit, regularizer):
    # `fuse_clean_pass` takes the labeled loss's weight gradient from the
    # backward pass that gives the input gradient; training must be the
    # same as with a separate backward pass: weights, BatchNormalization
    # statistics and losses, with a weight regularizer (fused) and an
    # activity regularizer (fusion turned off automatically).
    x = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
    y = np.arange(16) % 3

    def train(fuse):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 1), name="image")
        h = keras.layers.Conv2D(4, 3, activation="tanh")(inputs)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.Flatten()(h)
        reg = {f"{regularizer}_regularizer": keras.regularizers.L2(0.01)}
        model = keras.Model(inputs, keras.layers.Dense(3, **reg)(h))
        adv = nsl.keras.AdversarialRegularization(
            model, label_keys=["y"], fuse_clean_pass=fuse,
            adv_config=nsl.configs.make_adv_reg_config(
                multiplier=0.5, adv_step_size=0.1))
        adv.compile("adam", keras.losses.SparseCategoricalCrossentropy(
            from_logits=True), jit_compile=jit)
        initial = to_numpy(model.weights[0]).copy()
        history = adv.fit({"image": x, "y": y}, batch_size=8, epochs=2,
                          shuffle=False, verbose=0).history
        return initial, [to_numpy(v) for v in model.weights], history["loss"]

    initial, fused_weights, fused_loss = train(True)
    _, plain_weights, plain_loss = train(False)
    assert not np.allclose(fused_weights[0], initial, atol=1e-3)
    for a, b in zip(fused_weights, plain_weights):
        assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert_allclose(fused_loss, plain_loss, rtol=1e-5)


def test_save_and_load_round_trip(tmp_path):
    model = linear_model()
    adv = wrap(model, metrics=["mae"], config=adv_config(
        clip_value_min=0.0, clip_value_max=5.0))
    data = {"feature": X0, "label": Y0}
    adv.fit(data, batch_size=1, verbose=0)
    path = os.path.join(tmp_path, "adv.keras")
    adv.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, nsl.keras.AdversarialRegularization)
    assert loaded.adv_config == adv.adv_config
    assert loaded.label_keys == ("label",)
    assert_allclose(loaded.predict(X0, verbose=0), adv.predict(X0,
                                                               verbose=0))
    # Compiled state comes back: training continues identically.
    adv.fit(data, batch_size=1, verbose=0)
    loaded.fit(data, batch_size=1, verbose=0)
    assert_allclose(kernel(loaded.base_model), kernel(model), rtol=1e-6)


class TestErrors:

    def test_labels_missing(self):
        adv = wrap(linear_model())
        with pytest.raises(ValueError, match=r"Labels are not in the input: "
                                             r"expected key\(s\) \['label'\] "
                                             r"in the input dict \(found keys"
                                             r" \['feature'\]\)"):
            adv.fit({"feature": X0}, batch_size=1, verbose=0)

    def test_label_key_not_in_data(self):
        adv = wrap(linear_model(), label_keys=["y1", "y2"])
        with pytest.raises(ValueError, match=r"Label key\(s\) \['y2'\] not "
                                             r"found in the input dict"):
            adv.fit({"feature": X0, "y1": Y0}, batch_size=1, verbose=0)

    def test_labels_given_twice(self):
        adv = wrap(linear_model())
        with pytest.raises(ValueError, match="Labels were given twice"):
            adv.fit({"feature": X0, "label": Y0}, Y0, batch_size=1,
                    verbose=0)

    def test_integer_features_only(self):
        x = keras.Input((2,), name="feature", dtype="int32")
        h = keras.layers.Dense(1)(keras.layers.Activation("linear")(
            ops.cast(x, "float32")))
        adv = wrap(keras.Model(x, h))
        with pytest.raises(ValueError, match=r"No feature can be perturbed: "
                                             r"\['feature'\] are not "
                                             r"floating-point"):
            adv.fit({"feature": np.array([[2, 3]], "int32"), "label": Y0},
                    batch_size=1, verbose=0)

    def test_mask_names_an_integer_feature(self):
        a = keras.Input((2,), name="a")
        b = keras.Input((1,), name="b", dtype="int32")
        h = keras.layers.Concatenate()([a, ops.cast(b, "float32")])
        adv = wrap(keras.Model([a, b], keras.layers.Dense(1)(h)),
                   config=adv_config(feature_mask={"a": 1.0, "b": 1.0}))
        with pytest.raises(ValueError, match=r"`feature_mask` names feature "
                                             r"'b', which cannot be "
                                             r"perturbed"):
            adv.fit({"a": X0, "b": np.array([[1]], "int32"), "label": Y0},
                    batch_size=1, verbose=0)

    def test_model_input_missing_from_dict(self):
        adv = wrap(linear_model(name="pixels"))
        with pytest.raises(ValueError, match=r"input named 'pixels', which "
                                             r"is not in the input dict"):
            adv.fit({"feature": X0, "label": Y0}, batch_size=1, verbose=0)

    def test_bad_arguments(self):
        with pytest.raises(TypeError, match="`adv_config` must be an "
                                            "nsl.configs.AdvRegConfig"):
            nsl.keras.AdversarialRegularization(linear_model(),
                                                adv_config={"multiplier": 1})
        adv = nsl.keras.AdversarialRegularization(linear_model())
        with pytest.raises(ValueError, match="`loss` is required"):
            adv.compile("sgd")

    @pytest.mark.parametrize("jit", JIT_MODES)
    def test_nonfinite_gradient_raises(self, jit):
        inputs = keras.Input((2,), name="feature")
        outputs = keras.layers.Lambda(lambda t: ops.sqrt(t))(inputs)
        adv = wrap(keras.Model(inputs, outputs), jit,
                   config=adv_config(nonfinite_gradient="raise"))
        data = {"feature": np.array([[0., 1.]], "float32"),
                "label": np.ones((1, 2), "float32")}
        if jit and BACKEND == "tensorflow":
            with pytest.raises(ValueError, match="XLA drops runtime checks"):
                adv.fit(data, batch_size=1, verbose=0)
            return
        # The library's message is the first line of the error, on every
        # backend (not under TensorFlow's "Graph execution error" stack).
        with pytest.raises(FloatingPointError) as info:
            adv.fit(data, batch_size=1, verbose=0)
        assert str(info.value).startswith(
            "The input gradient has NaN or Inf entries"), str(info.value)
