"""Every wrapper trains under Keras mixed-precision policies (issue 10, item 5).

With `mixed_bfloat16` / `mixed_float16` the model's inputs are float32 but its
layers compute in bfloat16/float16, and its outputs are in that dtype unless
the last layer is given `dtype='float32'`. Both kinds of output layer are
tested, on whichever backend `KERAS_BACKEND` selects. The dtype policy is
restored after each test.
"""

import keras
import numpy as np
import pytest
from keras import ops

import neural_structured_learning as nsl
from neural_structured_learning import configs
from neural_structured_learning._testing import to_numpy
from neural_structured_learning.lib import adversarial_neighbor
from neural_structured_learning.lib import distances
from neural_structured_learning.lib import regularizer

POLICIES = ["mixed_bfloat16", "mixed_float16"]
OUTPUTS = ["policy", "float32"]  # The output layer's dtype.
BATCH, FEATURES, CLASSES = 16, 4, 3

RNG = np.random.default_rng(0)
X = RNG.uniform(0.0, 1.0, (BATCH, FEATURES)).astype("float32")
Y = RNG.integers(0, CLASSES, BATCH).astype("int32")


@pytest.fixture(params=POLICIES)
def policy(request):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(request.param)
    try:
        yield request.param
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.config.dtype_policy().name == previous.name


def f32(x):
    return np.asarray(to_numpy(x), "float32")


def classifier(policy, output):
    """x -> tanh(x W1 + b1) W2 + b2 (logits), built under `policy`."""
    init = keras.initializers.GlorotUniform
    inputs = keras.Input((FEATURES,), name="feature")
    hidden = keras.layers.Dense(8, "tanh", name="hidden",
                                kernel_initializer=init(seed=1),
                                bias_initializer="zeros")(inputs)
    logits = keras.layers.Dense(
        CLASSES, name="logits", kernel_initializer=init(seed=2),
        dtype=None if output == "policy" else "float32")(hidden)
    model = keras.Model(inputs, logits)
    compute = keras.mixed_precision.Policy(policy).compute_dtype
    assert model.get_layer("hidden").compute_dtype == compute
    out = model(X)
    assert keras.backend.standardize_dtype(out.dtype) == (
        compute if output == "policy" else "float32")
    return model


def weights_of(model):
    return [f32(v) for v in model.trainable_variables]


def assert_trained(before, model):
    after = weights_of(model)
    assert all(np.all(np.isfinite(w)) for w in after)
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


def assert_finite_history(history):
    for name, values in history.items():
        assert np.all(np.isfinite(values)), (name, values)


def crossentropy(logits, labels):
    """Mean sparse softmax cross-entropy, in float64."""
    z = np.asarray(logits, "float64")
    z = z - z.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -np.mean(log_p[np.arange(len(labels)), labels])


def per_example_norm(delta, norm):
    if norm == "infinity":
        return np.max(np.abs(delta), axis=1)
    return np.sqrt(np.sum(np.square(delta.astype("float64")), axis=1))


# -- AdversarialRegularization ------------------------------------------------

ADV_CASES = {
    "fgsm_linf": dict(adv_step_size=0.1, adv_grad_norm="infinity"),
    "fgsm_l2": dict(adv_step_size=0.2, adv_grad_norm="l2"),
    "pgd_clip": dict(adv_step_size=0.05, adv_grad_norm="infinity",
                     pgd_iterations=3, pgd_epsilon=0.08, clip_value_min=0.0,
                     clip_value_max=1.0),
}


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("case", sorted(ADV_CASES))
def test_adversarial_regularization(policy, output, case):
    multiplier = 0.5
    neighbor = ADV_CASES[case]
    model = classifier(policy, output)
    adv = nsl.keras.AdversarialRegularization(
        model, adv_config=nsl.configs.make_adv_reg_config(
            multiplier=multiplier, **neighbor))
    adv.compile(keras.optimizers.Adam(0.05),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    # The neighbour: float32 like the input, at the configured distance.
    x_adv = adv.perturb_on_batch({"feature": X, "label": Y})["feature"]
    assert x_adv.dtype == np.float32
    distance = per_example_norm(x_adv - X, neighbor["adv_grad_norm"])
    if case == "pgd_clip":
        assert np.all((x_adv >= 0.0) & (x_adv <= 1.0))
        assert np.all(distance <= neighbor["pgd_epsilon"] * (1 + 1e-5))
        # Three steps of 0.05 in a ball of 0.08: the walk reaches its rim.
        np.testing.assert_allclose(np.max(distance), neighbor["pgd_epsilon"],
                                   rtol=1e-2)
    else:
        np.testing.assert_allclose(distance, neighbor["adv_step_size"],
                                   rtol=1e-2)
    clean_loss = crossentropy(f32(model(X)), Y)
    adv_loss = crossentropy(f32(model(x_adv)), Y)
    assert adv_loss > clean_loss + 0.02  # The neighbour is adversarial.

    # fit: one batch per epoch, so epoch 0 reports the initial weights.
    before = weights_of(model)
    history = adv.fit({"feature": X, "label": Y}, batch_size=BATCH, epochs=4,
                      verbose=0).history
    assert_finite_history(history)
    labeled = history["sparse_categorical_crossentropy"][0]
    scaled = history["scaled_adversarial_loss"][0]
    tolerance = dict(rtol=3e-2, atol=1e-2)
    np.testing.assert_allclose(labeled, clean_loss, **tolerance)
    # The regularization is the loss at the neighbour training computed, not
    # a multiple of the clean loss.
    np.testing.assert_allclose(scaled / multiplier, adv_loss, **tolerance)
    assert scaled / multiplier > labeled + 0.02
    np.testing.assert_allclose(history["loss"][0], labeled + scaled,
                               **tolerance)
    assert_trained(before, model)
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.parametrize("output", OUTPUTS)
def test_adversarial_loss_function(policy, output):
    model = classifier(policy, output)
    config = nsl.configs.make_adv_reg_config(adv_step_size=0.1,
                                              adv_grad_norm="infinity")
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    value = f32(nsl.keras.adversarial_loss(X, Y, model, loss_fn,
                                           adv_config=config))
    assert np.isfinite(value)
    assert value > crossentropy(f32(model(X)), Y) + 0.02


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_features_keep_their_dtype(policy, dtype):
    # The walk runs in float32; the neighbour is rounded back to `dtype`.
    model = classifier(policy, "float32")
    x = ops.cast(X, dtype)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    config = configs.AdvNeighborConfig(adv_step_size=0.1,
                                       adv_grad_norm="infinity")
    x_adv, _ = adversarial_neighbor.gen_adv_neighbor(
        x, lambda features: loss_fn(Y, model(features)), config)
    assert keras.backend.standardize_dtype(x_adv.dtype) == dtype
    half_ulp = 2.0**-8 if dtype == "bfloat16" else 2.0**-11  # Near 1.
    np.testing.assert_allclose(
        per_example_norm(f32(x_adv) - f32(x), "infinity"), 0.1,
        atol=half_ulp)


# -- VirtualAdversarialRegularization ---------------------------------------


def reference_vat_direction(model, x, d0, xi):
    """One power iteration of VAT in float64 NumPy (KL from logits, L2)."""
    w1, b1, w2, b2 = (np.asarray(w, "float64") for w in weights_of(model))

    def forward(inputs):
        hidden = np.tanh(inputs @ w1 + b1)
        return hidden, hidden @ w2 + b2

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    unit = d0 / np.linalg.norm(d0, axis=1, keepdims=True)
    hidden, logits = forward(x + xi * unit)
    # d KL(p || q) / d logits_q = q - p (up to the batch mean's 1/B).
    dz = softmax(logits) - softmax(forward(x)[1])
    grad = ((dz @ w2.T) * (1 - hidden**2)) @ w1.T
    return grad / np.linalg.norm(grad, axis=1, keepdims=True)


@pytest.mark.parametrize("output", OUTPUTS)
def test_virtual_adversarial_regularization(policy, output):
    epsilon, xi = 0.5, 0.1
    vat_config = configs.VirtualAdvConfig(
        configs.AdvNeighborConfig(adv_step_size=epsilon, adv_grad_norm="l2"),
        configs.DistanceConfig("kl_divergence", sum_over_axis=-1),
        num_approx_steps=1, approx_difference=xi)
    model = classifier(policy, output)
    vat = nsl.keras.VirtualAdversarialRegularization(
        model, vat_config=vat_config, multiplier=1.0)
    vat.compile(keras.optimizers.Adam(0.05),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    # The power iteration finds the float64 direction despite the low
    # precision compute (xi = 0.1 is well above bfloat16's resolution).
    d0 = RNG.normal(size=X.shape).astype("float32")
    direction = f32(regularizer.virtual_adv_direction(
        [ops.convert_to_tensor(X)], lambda xs: model(xs[0]), model(X),
        vat_config,
        initial_direction=[d0],
        distance_fn=lambda clean, perturbed: ops.mean(
            distances.kl_divergence_from_outputs(clean, perturbed)))[0])
    assert direction.dtype == np.float32
    np.testing.assert_allclose(per_example_norm(epsilon * direction, "l2"),
                               epsilon, rtol=1e-3)
    expected = reference_vat_direction(model, X, d0, xi)
    cosine = np.sum(direction * expected, axis=1)
    if policy == "mixed_float16":
        assert np.all(cosine > 0.95), cosine
    else:
        # bfloat16's 8-bit mantissa leaves the odd example's direction to
        # rounding noise; the rest match.
        assert np.median(cosine) > 0.99, cosine
        assert np.sum(cosine > 0.9) >= BATCH - 2, cosine

    # The VAT loss (KL in float32) matches the one at the found neighbour.
    loss = f32(vat.vat_loss(X, model(X), from_logits=True,
                            initial_direction=[d0]))
    p, q = (f32(model(v)) for v in (X, X + epsilon * direction))
    kl = np.mean(f32(distances.kl_divergence_from_outputs(
        ops.convert_to_tensor(p), ops.convert_to_tensor(q))))
    np.testing.assert_allclose(loss, kl, rtol=5e-2, atol=1e-4)
    assert loss > 1e-3

    labels = Y.copy()
    labels[::2] = -1  # Half the rows unlabeled.
    before = weights_of(model)
    history = vat.fit(X, labels, batch_size=BATCH, epochs=4,
                      verbose=0).history
    assert_finite_history(history)
    assert history["scaled_vat_loss"][0] > 1e-3
    assert_trained(before, model)


# -- GraphRegularization ------------------------------------------------------


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("neighbor_pass", ["batched", "separate"])
def test_graph_regularization(policy, output, neighbor_pass):
    multiplier = 0.5
    model = classifier(policy, output)
    graph = nsl.keras.GraphRegularization(
        model, configs.GraphRegConfig(
            neighbor_config=configs.GraphNeighborConfig(max_neighbors=1),
            multiplier=multiplier,
            distance_config=configs.DistanceConfig("l2")),
        neighbor_pass=neighbor_pass)
    graph.compile(keras.optimizers.Adam(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    neighbors = X + RNG.normal(0.0, 0.3, X.shape).astype("float32")
    x = {"feature": X, "NL_nbr_0_feature": neighbors,
         "NL_nbr_0_weight": np.ones((BATCH, 1), "float32")}
    expected = np.mean(np.square(f32(model(X)) - f32(model(neighbors))))
    clean = crossentropy(f32(model(X)), Y)
    assert expected > 1e-3

    before = weights_of(model)
    history = graph.fit(x, Y, batch_size=BATCH, epochs=4, verbose=0).history
    assert_finite_history(history)
    tolerance = dict(rtol=5e-2, atol=1e-3)
    np.testing.assert_allclose(history["scaled_graph_loss"][0],
                               multiplier * expected, **tolerance)
    np.testing.assert_allclose(history["loss"][0],
                               clean + history["scaled_graph_loss"][0],
                               rtol=3e-2, atol=1e-2)
    assert_trained(before, model)
