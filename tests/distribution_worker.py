"""One training step of each wrapper, on one device or distributed.

Usage: `python distribution_worker.py MODE OUTPUT.npz` with MODE one of
`single`, `data_parallel` (JAX, `keras.distribution.DataParallel`),
`model_parallel` (JAX, `ModelParallel` sharding the base model's Dense
kernels) or `mirrored` (TensorFlow, `tf.distribute.MirroredStrategy` over 2
logical CPUs). JAX needs `XLA_FLAGS=--xla_force_host_platform_device_count=4`.
`distribution_test.py` compares the weights after the step across modes.
"""

import contextlib
import sys

import numpy as np

MODE, OUTPUT = sys.argv[1], sys.argv[2]

if MODE == "mirrored":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

import neural_structured_learning as nsl  # noqa: E402

BATCH = 8
RNG = np.random.default_rng(0)
X = RNG.random((BATCH, 6)).astype("float32")
Y = (np.arange(BATCH) % 3).astype("int32")
NBR = (X + RNG.normal(scale=0.1, size=X.shape)).astype("float32")
NBR_WEIGHT = np.linspace(0.2, 1.0, BATCH).astype("float32")[:, None]

if MODE == "bad_inputs":  # JAX, 4 devices: clear errors, nothing trained.
    messages = {}
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    model = keras.Sequential([keras.Input((6,), name="x"),
                              keras.layers.Dense(3)])
    wrapper = nsl.keras.AdversarialRegularization(model)
    wrapper.compile("sgd", loss="mse")
    try:
        wrapper.fit({"x": X[:6], "label": np.zeros((6, 3), "float32")},
                    batch_size=6, verbose=0)
    except ValueError as error:
        messages["batch"] = str(error)
    mesh = keras.distribution.DeviceMesh((2, 2), ["batch", "model"])
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map["no_such_weight.*kernel"] = (None, "model")
    keras.distribution.set_distribution(keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch"))
    model = keras.Sequential([keras.Input((6,), name="x"),
                              keras.layers.Dense(4)])
    try:
        nsl.keras.AdversarialRegularization(model).compile("sgd", loss="mse")
    except ValueError as error:
        messages["layout"] = str(error)
    np.savez(OUTPUT, **messages)
    sys.exit(0)

if MODE == "data_parallel":
    keras.distribution.set_distribution(keras.distribution.DataParallel())
elif MODE == "model_parallel":
    mesh = keras.distribution.DeviceMesh((2, 2), ["batch", "model"])
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map["dense.*kernel"] = (None, "model")
    keras.distribution.set_distribution(keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch"))
strategy = tf.distribute.MirroredStrategy() if MODE == "mirrored" else None


def scope():
    return strategy.scope() if strategy else contextlib.nullcontext()


def mlp():
    model = keras.Sequential([
        keras.Input((6,), name="x"),
        keras.layers.Dense(8, activation="tanh", name="dense_1"),
        keras.layers.Dense(3, name="dense_2")])
    rng = np.random.default_rng(1)
    model.set_weights([(rng.normal(size=w.shape) * 0.5).astype("float32")
                       for w in model.get_weights()])
    return model


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def adversarial():
    model = mlp()
    wrapper = nsl.keras.AdversarialRegularization(
        model, adv_config=nsl.configs.make_adv_reg_config(
            multiplier=0.5, adv_step_size=0.1, adv_grad_norm="l2"))
    return model, wrapper, ({"x": X, "label": Y},)


def pgd():
    model = mlp()
    wrapper = nsl.keras.AdversarialRegularization(
        model, adv_config=nsl.configs.make_adv_reg_config(
            multiplier=0.5, adv_step_size=0.05, adv_grad_norm="infinity",
            pgd_iterations=3, pgd_epsilon=0.1))
    return model, wrapper, ({"x": X, "label": Y},)


def graph():
    model = mlp()
    wrapper = nsl.keras.GraphRegularization(
        model, nsl.configs.make_graph_reg_config(
            max_neighbors=1, multiplier=0.5, sum_over_axis=-1))
    features = {"x": X, "NL_nbr_0_x": NBR, "NL_nbr_0_weight": NBR_WEIGHT}
    return model, wrapper, (features, Y)


def vat():
    model = mlp()
    config = nsl.configs.VirtualAdvConfig(
        nsl.configs.AdvNeighborConfig(adv_step_size=0.5),
        nsl.configs.DistanceConfig("kl_divergence", sum_over_axis=-1),
        num_approx_steps=1, approx_difference=0.1)
    wrapper = nsl.keras.VirtualAdversarialRegularization(
        model, vat_config=config, entropy_weight=0.1, seed=3)
    return model, wrapper, (X, np.where(np.arange(BATCH) % 2 == 0, Y, -1))


results = {}
for name, make in [("adversarial", adversarial), ("pgd", pgd),
                   ("graph", graph), ("vat", vat)]:
    with scope():
        model, wrapper, data = make()
        wrapper.compile(keras.optimizers.SGD(0.1), loss=loss())
    history = wrapper.fit(*data, batch_size=BATCH, epochs=1, shuffle=False,
                          verbose=0).history
    for key, values in history.items():
        results[f"{name}/metric/{key}"] = np.asarray(values)
    for i, weight in enumerate(model.get_weights()):
        results[f"{name}/weight_{i}"] = np.asarray(weight)
np.savez(OUTPUT, **results)
