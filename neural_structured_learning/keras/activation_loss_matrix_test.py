"""The regularizers act on the models users write: a configuration matrix.

Issue 10: with a softmax output and `from_logits=False` (the NSL tutorial's
own model), TensorFlow trained with a zero adversarial step, because the
training step differentiated the loss with respect to the recorded softmax
probabilities while Keras's TensorFlow crossentropy reads the logits behind
them. Every earlier test used a logits model. This file runs every
combination of

    output activation {'softmax', the framework's own softmax, 'sigmoid',
                       linear} x loss {sparse categorical, categorical,
                       binary crossentropy, MSE} x from_logits {True, False}
    x fuse_clean_pass {True, False} x jit_compile {True, False}

(PyTorch: jit_compile False only, see `JIT_MODES`) and checks the
*neighbour used inside `fit`'s training step*, recorded by a layer at the
model's input: it differs from the input by exactly the configured step
(L2 norm per example) and equals `perturb_on_batch`'s on the same weights.
A training step that perturbs by zero, or along another gradient, fails.

The same kind of matrix for VAT checks that the virtual adversarial
direction is adversarial (its KL is several times that of a random
direction of the same radius) and that the term inside `fit` is nonzero,
for every output activation and `from_logits`.
"""

import keras
import numpy as np
import pytest
from keras import ops

import neural_structured_learning as nsl
from neural_structured_learning._testing import to_numpy

BACKEND = keras.config.backend()
# PyTorch's jit_compile is torch.compile (dynamo): tens of seconds per
# model here, so the matrix runs it for one combination only
# (`test_torch_compile_one_combination`).
JIT_MODES = [False, True] if BACKEND in ("tensorflow", "jax") else [False]
BATCH, DIM, CLASSES = 8, 6, 3
STEP = 0.05


def framework_softmax():
    """The backend's own softmax function, as a user would pass it."""
    if BACKEND == "tensorflow":
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        return tf.nn.softmax
    if BACKEND == "jax":
        import jax  # pylint: disable=import-outside-toplevel
        return jax.nn.softmax
    import torch  # pylint: disable=import-outside-toplevel
    return lambda x: torch.softmax(x, dim=-1)


ACTIVATIONS = {"softmax": lambda: "softmax",
               "framework_softmax": framework_softmax,
               "sigmoid": lambda: "sigmoid",
               "linear": lambda: None}
LOSSES = {"sparse_categorical_crossentropy":
          keras.losses.SparseCategoricalCrossentropy,
          "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
          "binary_crossentropy": keras.losses.BinaryCrossentropy,
          "mean_squared_error": keras.losses.MeanSquaredError}


def _combinations():
    for activation in ACTIVATIONS:
        for loss in LOSSES:
            for from_logits in (True, False):
                if loss == "mean_squared_error" and from_logits:
                    continue  # MSE has no from_logits.
                if (activation == "linear" and not from_logits
                        and loss != "mean_squared_error"):
                    continue  # Logits read as probabilities: a user error.
                yield activation, loss, from_logits


COMBINATIONS = list(_combinations())


class InputRecorder(keras.layers.Layer):
    """Identity layer that keeps the last input it saw in a variable.

    The adversarial pass is the last base-model pass of a training step, so
    after `train_on_batch` the variable holds the neighbour the step used.
    Variable writes leave compiled steps on every backend.
    """

    def build(self, input_shape):
        self.seen = self.add_weight(shape=(BATCH, DIM), initializer="zeros",
                                    trainable=False, name="seen")

    def call(self, x):
        self.seen.assign(ops.cast(x, self.seen.dtype))
        return x

    def compute_output_shape(self, input_shape):
        return input_shape


def _data(loss, rng):
    x = rng.random((BATCH, DIM)).astype("float32")
    classes = np.arange(BATCH) % CLASSES
    if loss == "sparse_categorical_crossentropy":
        y = classes.astype("int32")
    elif loss == "mean_squared_error":
        y = rng.random((BATCH, CLASSES)).astype("float32")
    else:
        y = np.eye(CLASSES, dtype="float32")[classes]
    return x, y


def _model(activation, seed=1):
    keras.utils.set_random_seed(seed)
    recorder = InputRecorder()
    model = keras.Sequential([
        keras.Input((DIM,), name="feature"), recorder,
        keras.layers.Dense(8, activation="tanh"),
        keras.layers.Dense(CLASSES, activation=ACTIVATIONS[activation]())])
    return model, recorder


def _loss(loss, from_logits):
    if loss == "mean_squared_error":
        return LOSSES[loss]()
    return LOSSES[loss](from_logits=from_logits)


def _row_l2(a):
    return np.sqrt(np.sum(np.square(a), axis=-1))


def _check_training_neighbor(activation, loss, from_logits, fuse, jit):
    rng = np.random.default_rng(0)
    x, y = _data(loss, rng)
    model, recorder = _model(activation)
    config = nsl.configs.make_adv_reg_config(
        multiplier=0.2, adv_step_size=STEP, adv_grad_norm="l2")
    adv = nsl.keras.AdversarialRegularization(
        model, adv_config=config, fuse_clean_pass=fuse)
    adv.compile(keras.optimizers.SGD(0.1), loss=_loss(loss, from_logits),
                jit_compile=jit)
    data = {"feature": x, "label": y}
    expected = adv.perturb_on_batch(data)["feature"]
    logs = adv.train_on_batch(data, return_dict=True)
    used = to_numpy(recorder.seen)
    where = f"{activation}/{loss}/from_logits={from_logits}/fuse={fuse}"
    np.testing.assert_allclose(
        _row_l2(used - x), STEP, rtol=1e-4,
        err_msg=f"{where}: the training step's neighbour is not one step "
                "from the input")
    if not (BACKEND == "tensorflow" and activation == "framework_softmax"
            and from_logits):
        # Excluded: Keras's TensorFlow crossentropy itself computes two
        # different losses there. Given `from_logits=True` and a `Softmax`
        # op's output, it reads the op's input (the logits) in a graph
        # (`fit`) but the probabilities in eager mode (`perturb_on_batch`),
        # with a warning that the combination was probably not intended.
        np.testing.assert_allclose(
            used, expected, rtol=1e-4, atol=1e-5,
            err_msg=f"{where}: fit's neighbour differs from "
                    "perturb_on_batch's")
    np.testing.assert_allclose(_row_l2(expected - x), STEP, rtol=1e-4)
    assert np.isfinite(logs["loss"]), where
    return logs


@pytest.mark.parametrize("jit", JIT_MODES)
@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("activation,loss,from_logits", COMBINATIONS)
def test_training_step_uses_a_real_neighbor(activation, loss, from_logits,
                                            fuse, jit):
    _check_training_neighbor(activation, loss, from_logits, fuse, jit)


if BACKEND == "torch":
    def test_torch_compile_one_combination():
        # The tutorial's combination under torch.compile (jit_compile=True).
        _check_training_neighbor("softmax", "sparse_categorical_crossentropy",
                                 False, True, True)


def test_adversarial_loss_function_form():
    # `nsl.keras.adversarial_loss` on the tutorial's softmax model: the
    # adversarial loss exceeds the clean loss (a zero step would equal it).
    x, y = _data("sparse_categorical_crossentropy", np.random.default_rng(0))
    model, _ = _model("softmax")
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    x_t, y_t = ops.convert_to_tensor(x), ops.convert_to_tensor(y)
    clean = float(to_numpy(loss_fn(y_t, model(x_t))))
    config = nsl.configs.make_adv_reg_config(adv_step_size=0.5,
                                             adv_grad_norm="l2")
    adv = float(to_numpy(nsl.keras.adversarial_loss(
        x_t, y_t, model, loss_fn, adv_config=config)))
    assert adv > clean * 1.01, (adv, clean)


# ---------------------------------------------------------------------------
# VAT.

VAT_ACTIVATIONS = {"softmax": ("softmax", CLASSES),
                   "framework_softmax": (None, CLASSES),
                   "sigmoid": ("sigmoid", 1),
                   "linear": (None, CLASSES)}


def _vat_model(activation, from_logits):
    keras.utils.set_random_seed(3)
    name, units = VAT_ACTIVATIONS[activation]
    act = framework_softmax() if activation == "framework_softmax" else name
    model = keras.Sequential([
        keras.Input((DIM * 4,), name="feature"),
        keras.layers.Dense(16, activation="tanh"),
        keras.layers.Dense(units, activation=act)])
    if units == 1:
        loss = keras.losses.BinaryCrossentropy(from_logits=from_logits)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=from_logits)
    return model, loss, units


VAT_COMBINATIONS = [(a, f) for a in VAT_ACTIVATIONS for f in (True, False)
                    if (a == "linear") == f]


@pytest.mark.parametrize("jit", JIT_MODES)
@pytest.mark.parametrize("activation,from_logits", VAT_COMBINATIONS)
def test_vat_direction_is_adversarial(activation, from_logits, jit):
    rng = np.random.default_rng(0)
    batch = 16
    x = rng.normal(size=(batch, DIM * 4)).astype("float32")
    model, loss, units = _vat_model(activation, from_logits)
    y = (np.arange(batch) % 2 if units == 1 else
         np.arange(batch) % CLASSES).astype("int32")
    if units == 1:
        y = y.reshape(-1, 1).astype("float32")
    epsilon = 1.0
    config = nsl.configs.VirtualAdvConfig(
        nsl.configs.AdvNeighborConfig(adv_step_size=epsilon,
                                      adv_grad_norm="l2"),
        nsl.configs.DistanceConfig("kl_divergence", sum_over_axis=-1),
        num_approx_steps=1, approx_difference=1e-3)
    vat = nsl.keras.VirtualAdversarialRegularization(
        model, vat_config=config, multiplier=1.0, seed=0)
    vat.compile(keras.optimizers.SGD(0.0), loss=loss, jit_compile=jit)
    x_t = ops.convert_to_tensor(x)
    predictions = model(x_t)
    random = rng.normal(size=x.shape).astype("float32")
    random /= _row_l2(random)[:, None]
    # The KL at a random direction of the same radius, and after one power
    # iteration from that direction.
    from neural_structured_learning.lib import distances  # pylint: disable=g-import-not-at-top
    kl_random = float(np.mean(to_numpy(distances.kl_divergence_from_outputs(
        predictions, model(x_t + epsilon * ops.convert_to_tensor(random)),
        from_logits))))
    kl_adversarial = float(to_numpy(vat.vat_loss(
        {"feature": x_t}, predictions, from_logits=from_logits,
        initial_direction=[ops.convert_to_tensor(random)])))
    where = f"{activation}/from_logits={from_logits}"
    assert kl_random > 0, where
    assert kl_adversarial > 3 * kl_random, (where, kl_adversarial, kl_random)
    # Inside fit (learning rate 0: weights fixed), from a random start.
    logs = vat.train_on_batch({"feature": x, "label": y}, return_dict=True)
    assert logs["scaled_vat_loss"] > 3 * kl_random, (where, logs, kl_random)
