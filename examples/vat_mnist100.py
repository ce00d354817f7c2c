"""Semi-supervised MNIST with 100 labels: plain vs virtual adversarial training.

10 labeled images per class, the rest of MNIST's training images unlabeled
(labels hidden), 1,000 further training images as a labeled validation set
for choosing hyper-parameters (as Miyato et al. did), and the 10,000 test
images for the final number. The model is Miyato et al.'s MLP
(1200-600-300-150, BatchNormalization, ReLU). Models (`--models`):
labeled-only (`plain`), VAT alone (`vat`) and VAT + entropy minimisation
(`vat_entmin`, not run by default: it did no better, see docs/vat.md).
The defaults (epsilon 1.0, entropy weight 0.1 ramped up over 40 passes,
100 passes over the unlabeled data, VAT's perturbed passes in inference
mode: the wrapper's default) were chosen on the validation set;
docs/vat.md has the numbers. Each trained model is evaluated with
training's moving BatchNormalization statistics (the reported number) and
with statistics re-estimated on the training images, as Miyato et al. do
(`variants` in the JSON; not better here). Batches mix
`--labeled_batch_size` labeled and `--unlabeled_batch_size` unlabeled rows
(`nsl.keras.LabeledUnlabeledBatches`); the plain model sees the same labeled
rows only.

    KERAS_BACKEND=jax python examples/vat_mnist100.py --data_dir ../shared/data

Reference: Miyato et al., 2018, https://arxiv.org/abs/1704.03976 (Table 4:
1.36% test error with VAT, 1.27% with VAT + entropy minimisation).
"""

import argparse
import json
import os
import time

from neural_structured_learning import _quiet as quiet

quiet.framework_logs()  # Before Keras imports TensorFlow: no C++ log noise.

# pylint: disable=wrong-import-position
import keras  # noqa: E402
import numpy as np  # noqa: E402

import neural_structured_learning as nsl  # noqa: E402


def load_mnist(data_dir):
    path = os.path.join(data_dir or "", "mnist", "mnist.npz")
    if data_dir and os.path.exists(path):
        with np.load(path) as f:
            x_train, y_train = f["x_train"], f["y_train"]
            x_test, y_test = f["x_test"], f["y_test"]
    else:
        (x_train, y_train), (x_test, y_test) = (
            keras.datasets.mnist.load_data())
    flat = lambda x: (x.reshape(len(x), -1) / 255.0).astype("float32")
    return (flat(x_train), y_train.astype("int32"), flat(x_test),
            y_test.astype("int32"))


def split(x, y, labeled_per_class, validation, seed):
    """Labeled (balanced), validation and unlabeled indices."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    labeled = np.concatenate([
        order[y[order] == c][:labeled_per_class] for c in range(10)])
    rest = np.setdiff1d(order, labeled)
    rest = rng.permutation(rest)
    return labeled, rest[:validation], rest[validation:]


def build_mlp(units=(1200, 600, 300, 150), batchnorm=True):
    layers = [keras.Input((784,), name="image")]
    for n in units:
        if batchnorm:
            layers += [keras.layers.Dense(n, use_bias=False),
                       keras.layers.BatchNormalization(),
                       keras.layers.Activation("relu")]
        else:
            layers.append(keras.layers.Dense(n, activation="relu"))
    layers.append(keras.layers.Dense(10))
    return keras.Sequential(layers)


def recalibrate_batchnorm(model, x, batch_size=1000):
    """Sets each BatchNormalization's statistics to their values on `x`.

    Layer by layer, in order: the mean and (biased) variance of the layer's
    inputs over all of `x`, computed in inference mode with the layers
    before it already recalibrated (Miyato et al. evaluate with statistics
    re-estimated this way instead of training's moving averages).
    """
    layers = model.layers
    for k, layer in enumerate(layers):
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        total, total_sq = 0.0, 0.0
        for start in range(0, len(x), batch_size):
            h = keras.ops.convert_to_tensor(x[start:start + batch_size])
            for before in layers[:k]:
                h = before(h, training=False)
            h = keras.ops.convert_to_numpy(h).astype("float64")
            total = total + h.sum(0)
            total_sq = total_sq + (h * h).sum(0)
        mean = total / len(x)
        layer.moving_mean.assign(mean.astype("float32"))
        layer.moving_variance.assign(
            np.maximum(total_sq / len(x) - mean * mean, 0).astype("float32"))


def accuracy(model, x, y):
    logits = model.predict(x, batch_size=1000, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


class ValidationHistory(keras.callbacks.Callback):
    """Records validation accuracy every `every` epochs; keeps the last
    epoch's weights (`fit` then swaps in the optimizer's EMA, if any)."""

    def __init__(self, model, x, y, every):
        super().__init__()
        self.base, self.x, self.y, self.every = model, x, y, every
        self.history = []
        self.last_weights = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.params["epochs"]:
            self.last_weights = self.base.get_weights()
        if (epoch + 1) % self.every == 0:
            acc = accuracy(self.base, self.x, self.y)
            self.history.append((epoch + 1, acc))
            print(f"  epoch {epoch + 1}: validation accuracy {acc:.4f}",
                  flush=True)


def train(args, data, name):
    x_train, y_train, labeled, validation, unlabeled = data
    keras.utils.set_random_seed(args.seed)
    model = build_mlp(tuple(int(n) for n in args.units.split(",")),
                      batchnorm=args.batchnorm)
    batches = nsl.keras.LabeledUnlabeledBatches(
        x_train[labeled], y_train[labeled], x_train[unlabeled],
        labeled_batch_size=args.labeled_batch_size,
        unlabeled_batch_size=args.unlabeled_batch_size, seed=args.seed)
    config = nsl.configs.VirtualAdvConfig(
        nsl.configs.AdvNeighborConfig(adv_step_size=args.epsilon,
                                      adv_grad_norm="l2"),
        nsl.configs.DistanceConfig("kl_divergence", sum_over_axis=-1),
        num_approx_steps=1, approx_difference=args.xi)
    wrapper = nsl.keras.VirtualAdversarialRegularization(
        model, vat_config=config,
        multiplier=0.0 if name == "plain" else args.multiplier,
        entropy_weight=args.entropy_weight if name == "vat_entmin" else 0.0,
        entropy_rampup_epochs=args.entropy_rampup,
        seed=args.seed,
        perturbed_pass_training=(None if args.perturbed_pass_training ==
                                 "same" else False))
    steps = args.epochs * len(batches)
    if args.schedule == "cosine":
        schedule = keras.optimizers.schedules.CosineDecay(args.learning_rate,
                                                          steps)
    else:  # Miyato et al.'s code: x0.9 every 500 steps (an "epoch" there).
        schedule = keras.optimizers.schedules.ExponentialDecay(
            args.learning_rate, args.decay_steps, args.decay_rate,
            staircase=True)
    optimizer = keras.optimizers.Adam(
        schedule, use_ema=args.ema_momentum > 0,
        ema_momentum=args.ema_momentum or 0.99)
    wrapper.compile(optimizer,
                    loss=keras.losses.SparseCategoricalCrossentropy(
                        from_logits=True),
                    metrics=["accuracy"])
    callback = ValidationHistory(model, x_train[validation],
                                 y_train[validation], args.eval_every)
    start = time.time()
    wrapper.fit(batches, epochs=args.epochs, verbose=0, callbacks=[callback])
    seconds = time.time() - start
    final = {"raw": callback.last_weights}
    if args.ema_momentum > 0:
        final["ema"] = model.get_weights()  # EMA weights, moving statistics
    return model, seconds, callback.history, steps, final


def evaluate_variants(model, final, data, x_test, y_test):
    """Validation accuracy and test error of the trained weights (`raw`)
    and their EMA (if kept), each with training's moving BatchNormalization
    statistics (`moving`) and with statistics re-estimated on the training
    images (`recalibrated`)."""
    x_train, y_train, labeled, validation, unlabeled = data
    seen = x_train[np.concatenate([labeled, unlabeled])]
    variants = {}
    for name, weights in final.items():
        model.set_weights(weights)
        for stats in ("moving", "recalibrated"):
            if stats == "recalibrated":
                recalibrate_batchnorm(model, seen)
            variants[f"{name}_{stats}"] = dict(
                validation=accuracy(model, x_train[validation],
                                    y_train[validation]),
                test_error=1 - accuracy(model, x_test, y_test))
    model.set_weights(final["raw"])
    return variants


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=os.environ.get("NSL_DATA_DIR"))
    parser.add_argument("--labeled_per_class", type=int, default=10)
    parser.add_argument("--validation", type=int, default=1000)
    parser.add_argument("--max_unlabeled", type=int, default=None,
                        help="use only N unlabeled images (quick runs)")
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--xi", type=float, default=1e-3)
    parser.add_argument("--multiplier", type=float, default=1.0)
    parser.add_argument("--entropy_weight", type=float, default=0.1,
                        help="entropy minimisation weight of vat_entmin")
    parser.add_argument("--entropy_rampup", type=int, default=40,
                        help="passes over which vat_entmin's entropy weight "
                        "ramps up from ~0 (sigmoid; 0: full weight at once)")
    parser.add_argument("--epochs", type=int, default=100,
                        help="passes over the unlabeled data")
    parser.add_argument("--labeled_batch_size", type=int, default=32)
    parser.add_argument("--unlabeled_batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--schedule", default="cosine",
                        choices=["cosine", "exponential"],
                        help="learning rate: cosine decay to 0 over the run, "
                        "or x decay_rate every decay_steps steps")
    parser.add_argument("--decay_steps", type=int, default=500)
    parser.add_argument("--decay_rate", type=float, default=0.9)
    parser.add_argument("--ema_momentum", type=float, default=0.0,
                        help="also evaluate an exponential moving average "
                        "of the weights with this momentum (0: none)")
    parser.add_argument("--eval_every", type=int, default=5)
    parser.add_argument("--units", default="1200,600,300,150",
                        help="hidden layer sizes, comma-separated")
    parser.add_argument("--batchnorm", type=lambda s: s == "true",
                        default=True, help="true/false: BatchNormalization "
                        "after each hidden Dense layer")
    parser.add_argument("--perturbed_pass_training", default="false",
                        choices=["same", "false"],  # same: Miyato et al.
                        help="VAT's perturbed passes in the step's training "
                        "mode (batch statistics) or in inference mode")
    parser.add_argument("--models", nargs="+",
                        default=["plain", "vat"],
                        choices=["plain", "vat", "vat_entmin"],
                        help="labeled-only, VAT alone, VAT + entropy "
                        "minimisation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default="out/vat_mnist100")
    args = parser.parse_args(argv)

    x_train, y_train, x_test, y_test = load_mnist(args.data_dir)
    labeled, validation, unlabeled = split(
        x_train, y_train, args.labeled_per_class, args.validation, args.seed)
    unlabeled = unlabeled[:args.max_unlabeled]
    data = (x_train, y_train, labeled, validation, unlabeled)
    print(f"backend={keras.config.backend()} labeled={len(labeled)} "
          f"validation={len(validation)} unlabeled={len(unlabeled)} "
          f"test={len(y_test)}", flush=True)
    rows = []
    for name in args.models:
        print(f"training {name} ...", flush=True)
        model, seconds, history, steps, final = train(args, data, name)
        variants = evaluate_variants(model, final, data, x_test, y_test)
        for variant, result in variants.items():
            print(f"  {variant}: validation accuracy "
                  f"{result['validation']:.4f}, test error "
                  f"{100 * result['test_error']:.2f}%", flush=True)
        rows.append(dict(model=name,
                         test_error=variants["raw_moving"]["test_error"],
                         validation=history[-1][1] if history else None,
                         train_seconds=round(seconds), steps=steps,
                         history=history, variants=variants))
    print("\n| model | test error | validation accuracy | steps | train s |")
    print("|---|---|---|---|---|")
    for r in rows:
        validation = ("-" if r["validation"] is None
                      else f"{r['validation']:.4f}")
        print(f"| {r['model']} | {100 * r['test_error']:.2f}% | "
              f"{validation} | {r['steps']} | {r['train_seconds']} |")
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, f"results_{keras.config.backend()}"
                           f"_seed{args.seed}.json"), "w") as f:
        json.dump({"args": vars(args), "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
