"""Computes adversarial-regularization results on fixed weights and inputs.

Run once per backend (`KERAS_BACKEND=jax python cross_backend_worker.py
out.npz`) and, with `--nsl14`, under NSL 1.4 + tf.keras 2.15 (its own venv):
`cross_backend_test.py` compares the outputs. The script uses only API that
both libraries share, so the same code exercises both.
"""

import argparse
import os

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("output")
parser.add_argument("--nsl14", action="store_true",
                    help="run under NSL 1.4 with tf.keras (TF 2.15)")
args = parser.parse_args()

if args.nsl14:
    import tensorflow as tf
    keras = tf.keras
    BACKEND = "nsl14"
else:
    import keras
    BACKEND = keras.config.backend()
import neural_structured_learning as nsl  # noqa: E402

BATCH = 8
RNG = np.random.default_rng(1234)
IMAGES = RNG.random((BATCH, 8, 8, 1)).astype("float32")
LABELS = (np.arange(BATCH) % 4).astype("int32")


def mlp():
    return keras.Sequential([
        keras.Input((8, 8, 1), name="x"), keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"), keras.layers.Dense(4)])


def mlp_softmax():
    # The NSL tutorial's form: softmax output, loss with from_logits=False.
    return keras.Sequential([
        keras.Input((8, 8, 1), name="x"), keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(4, activation="softmax")])


def cnn():
    inputs = keras.Input((8, 8, 1), name="x")
    h = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    return keras.Model(inputs, keras.layers.Dense(4)(h))


def bn_mlp():
    return keras.Sequential([
        keras.Input((8, 8, 1), name="x"), keras.layers.Flatten(),
        keras.layers.Dense(16), keras.layers.BatchNormalization(),
        keras.layers.Activation("relu"), keras.layers.Dense(4)])


def with_fixed_weights(build):
    model = build()
    rng = np.random.default_rng(7)
    model.set_weights([
        (rng.normal(size=w.shape) * 0.3).astype("float32")
        if w.ndim > 1 else np.full(w.shape, 0.05, "float32")
        for w in model.get_weights()])
    return model


CONFIGS = {
    "fgsm_l2": dict(multiplier=0.2, adv_step_size=0.1, adv_grad_norm="l2"),
    "fgsm_inf_clip": dict(multiplier=0.3, adv_step_size=0.05,
                          adv_grad_norm="infinity",
                          clip_value_min={"x": 0.0},
                          clip_value_max={"x": 1.0}),
    "pgd_inf_clip": dict(multiplier=0.2, adv_step_size=0.02,
                         adv_grad_norm="infinity", pgd_iterations=3,
                         pgd_epsilon=0.05, clip_value_min={"x": 0.0},
                         clip_value_max={"x": 1.0}),
    "pgd_l2": dict(multiplier=0.5, adv_step_size=0.1, adv_grad_norm="l2",
                   pgd_iterations=3, pgd_epsilon=0.2),
}
MODELS = {"mlp": mlp, "mlp_softmax": mlp_softmax, "cnn": cnn,
          "bn_mlp": bn_mlp}


def loss_object(model_name="mlp"):
    return keras.losses.SparseCategoricalCrossentropy(
        from_logits=model_name != "mlp_softmax")


def run(model_name, config_name):
    config = nsl.configs.make_adv_reg_config(**CONFIGS[config_name])
    data = {"x": IMAGES, "label": LABELS}
    results = {}
    if model_name != "bn_mlp":
        model = with_fixed_weights(MODELS[model_name])
        as_tensor = tf.constant if args.nsl14 else keras.ops.convert_to_tensor
        results["adversarial_loss"] = nsl.keras.adversarial_loss(
            {"x": as_tensor(IMAGES)}, as_tensor(LABELS), model,
            loss_object(model_name), adv_config=config)
    model = with_fixed_weights(MODELS[model_name])
    adv_model = nsl.keras.AdversarialRegularization(
        model, label_keys=["label"], adv_config=config)
    adv_model.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=loss_object(model_name))
    results["neighbor"] = adv_model.perturb_on_batch(data)["x"]
    evaluation = adv_model.evaluate(data, batch_size=BATCH, verbose=0,
                                    return_dict=True)
    results["eval_loss"] = evaluation["loss"]
    results["eval_scaled_adversarial_loss"] = evaluation[
        "scaled_adversarial_loss"]
    adv_model.fit(data, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    for i, weight in enumerate(model.get_weights()):
        results[f"weight_{i}"] = weight
    return results


def main():
    out = {}
    for model_name in MODELS:
        for config_name in CONFIGS:
            for key, value in run(model_name, config_name).items():
                out[f"{model_name}/{config_name}/{key}"] = np.asarray(
                    keras.ops.convert_to_numpy(value) if not args.nsl14
                    else getattr(value, "numpy", lambda: value)())
    if not args.nsl14:
        # VAT from a fixed direction, logits compared with the L2 distance.
        from neural_structured_learning.lib import regularizer
        model = with_fixed_weights(mlp)
        direction = np.random.default_rng(3).normal(
            size=IMAGES.shape).astype("float32")
        vat_config = nsl.configs.VirtualAdvConfig(
            nsl.configs.AdvNeighborConfig(adv_step_size=0.5),
            nsl.configs.DistanceConfig("l2", sum_over_axis=-1),
            num_approx_steps=1, approx_difference=0.1)
        vat = regularizer.virtual_adv_regularizer(
            keras.ops.convert_to_tensor(IMAGES), model, vat_config,
            initial_direction=keras.ops.convert_to_tensor(direction))
        out["mlp/vat/loss"] = np.asarray(keras.ops.convert_to_numpy(vat))
        # The VAT wrapper's loss (KL from logits) from a fixed start. (A fit
        # step cannot be compared: each backend draws its own random start.)
        for xi in (0.1, 1e-3):
            config = nsl.configs.VirtualAdvConfig(
                nsl.configs.AdvNeighborConfig(adv_step_size=1.0),
                nsl.configs.DistanceConfig("kl_divergence",
                                           sum_over_axis=-1),
                num_approx_steps=1, approx_difference=xi)
            model = with_fixed_weights(mlp)
            wrapper = nsl.keras.VirtualAdversarialRegularization(
                model, vat_config=config)
            wrapper.compile(keras.optimizers.SGD(0.1), loss=loss_object())
            value = wrapper.vat_loss(
                {"x": IMAGES}, model(IMAGES), from_logits=True,
                initial_direction=[keras.ops.convert_to_tensor(direction)])
            out[f"vat_xi={xi:g}/loss"] = np.asarray(
                keras.ops.convert_to_numpy(value))
    np.savez(args.output, backend=BACKEND, **out)


main()
