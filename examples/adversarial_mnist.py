"""Adversarial regularization of a CNN on MNIST (NSL's tutorial, on Keras 3).

Trains the tutorial's CNN (conv 32-64-64, 3x3, max-pool 2, dense 64) twice,
plainly and with `nsl.keras.AdversarialRegularization` (multiplier 0.2, FGSM
step 0.2 in the infinity norm), then evaluates both clean and under FGSM
(infinity norm, eps 0.2, clipped to [0, 1]) crafted against each model itself
(white-box) and against the base model (the tutorial's transfer attack, which
flatters the regularized model). Writes a PNG grid of perturbed digits with
their true label and both models' predictions.

    KERAS_BACKEND=jax python examples/adversarial_mnist.py --data_dir ../shared/data

Data (`--dataset`):
  mnist   MNIST from `<data_dir>/mnist/mnist.npz` (`--data_dir` or the
          NSL_DATA_DIR environment variable), else `keras.datasets.mnist`
          (downloads).
  digits  scikit-learn's bundled 8x8 digits (1,797 images, offline),
          upsampled to 24x24; a quick demo.
  auto    (default) mnist if a local copy is found, else digits.
"""

import argparse
import contextlib
import json
import os
import time

from neural_structured_learning import _quiet as quiet

quiet.framework_logs()  # Before Keras imports TensorFlow: no C++ log noise.

# pylint: disable=wrong-import-position
import keras  # noqa: E402
import numpy as np  # noqa: E402

import neural_structured_learning as nsl  # noqa: E402
from plotting import pyplot  # noqa: E402  (examples/plotting.py)


def load_data(dataset, data_dir):
    """Returns `(x_train, y_train, x_test, y_test, name)`, images in [0, 1]."""
    local = data_dir and os.path.exists(os.path.join(data_dir, "mnist",
                                                     "mnist.npz"))
    if dataset == "auto":
        dataset = "mnist" if local else "digits"
    if dataset == "mnist":
        if local:
            with np.load(os.path.join(data_dir, "mnist", "mnist.npz")) as f:
                (x_train, y_train), (x_test, y_test) = (
                    (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"]))
        else:
            (x_train, y_train), (x_test, y_test) = (
                keras.datasets.mnist.load_data())
        x_train, x_test = x_train / 255.0, x_test / 255.0
    elif dataset == "digits":
        try:
            from sklearn.datasets import load_digits
            from sklearn.model_selection import train_test_split
        except ImportError:
            raise SystemExit(
                "The digits dataset needs scikit-learn: pip install "
                "scikit-learn (or the examples extra: pip install "
                "'neural-structured-learning-keras[examples]'), or use "
                "--dataset mnist.") from None
        digits = load_digits()
        images = np.kron(digits.images / 16.0, np.ones((3, 3)))  # 24x24.
        x_train, x_test, y_train, y_test = train_test_split(
            images, digits.target, test_size=0.25, random_state=0,
            stratify=digits.target)
    else:
        raise ValueError(f"Unknown dataset {dataset!r}")
    x_train = x_train[..., None].astype("float32")
    x_test = x_test[..., None].astype("float32")
    return (x_train, y_train.astype("int32"), x_test,
            y_test.astype("int32"), dataset)


def build_cnn(input_shape, num_classes=10, output="softmax"):
    """The NSL tutorial's CNN; its input is named 'image'.

    As in the tutorial, the last layer is a softmax (`output='softmax'`,
    trained with `from_logits=False`); `output='logits'` leaves it linear.
    """
    inputs = keras.Input(input_shape, name="image")
    h = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(64, 3, activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(64, 3, activation="relu")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(64, activation="relu")(h)
    activation = "softmax" if output == "softmax" else None
    return keras.Model(inputs, keras.layers.Dense(
        num_classes, activation=activation)(h))


def distribution_scope(kind):
    """Sets up data-parallel training; returns a function giving the scope
    to build and compile models in.

    * JAX: `keras.distribution.DataParallel` over all devices (with
      `multi_worker`, `keras.distribution.initialize()` first reads the
      cluster from KERAS_DISTRIBUTION_JOB_ADDRESSES,
      KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID).
    * TensorFlow: `tf.distribute.MirroredStrategy`, or
      `MultiWorkerMirroredStrategy` (cluster from TF_CONFIG).
    * PyTorch: Keras has no distribution API for torch (see
      docs/distributed.md).
    """
    if kind == "none":
        return contextlib.nullcontext
    backend = keras.config.backend()
    if backend == "jax":
        if kind == "multi_worker":
            keras.distribution.initialize()
        keras.distribution.set_distribution(
            keras.distribution.DataParallel())
        return contextlib.nullcontext
    if backend == "tensorflow":
        import tensorflow as tf
        strategy = (tf.distribute.MultiWorkerMirroredStrategy()
                    if kind == "multi_worker"
                    else tf.distribute.MirroredStrategy())
        return strategy.scope
    raise SystemExit("--distribute needs the jax or tensorflow backend; "
                     "see docs/distributed.md for PyTorch.")


def compile_args(output="softmax"):
    return dict(optimizer="adam",
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=output == "logits"),
                metrics=["accuracy"])


def results_path(output_dir, dataset, backend, output, seed):
    """Where a run writes its JSON results."""
    return os.path.join(output_dir,
                        f"results_{dataset}_{backend}_{output}_seed{seed}.json")


def fgsm(model, images, labels, eps, batch_size=500):
    """FGSM (infinity norm, clipped to [0, 1]) against `model`."""
    return nsl.evaluation.generate_adversarial(
        model, images, labels, nsl.evaluation.fgsm(eps), clip=(0.0, 1.0),
        batch_size=batch_size)


def predict(model, images, batch_size=500):
    """Predicted classes. Through `nsl.evaluation`, like the attacks: the
    same fixed-size batches, so TensorFlow traces the model once (mixing
    `model.predict` with other batch shapes would retrace it)."""
    return nsl.evaluation.predict_classes(model, images,
                                          batch_size=batch_size)


def accuracy(model, images, labels):
    return float(np.mean(predict(model, images) == labels))


def plot_grid(path, images, labels, predictions, title, n=20):
    """Draws perturbed digits; returns False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    cols = 10
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.9))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i, ..., 0], cmap="gray", vmin=0, vmax=1)
        base, adv = predictions["base"][i], predictions["adversarial"][i]
        color = "red" if base != labels[i] else "black"
        ax.set_title(f"y={labels[i]}\nbase={base} adv={adv}", fontsize=7,
                     color=color)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="auto",
                        choices=["auto", "mnist", "digits"])
    parser.add_argument("--data_dir", default=os.environ.get("NSL_DATA_DIR"))
    parser.add_argument("--epochs", type=int, default=None,
                        help="default: 5 for MNIST (the tutorial), 20 for "
                             "the small digits set")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--multiplier", type=float, default=0.2)
    parser.add_argument("--adv_step_size", type=float, default=0.2)
    parser.add_argument("--eps", type=float, default=0.2,
                        help="FGSM epsilon of the evaluation attack")
    parser.add_argument("--max_train", type=int, default=None,
                        help="use only the first N training examples")
    parser.add_argument("--max_test", type=int, default=None,
                        help="evaluate on the first N test examples only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="softmax",
                        choices=["softmax", "logits"],
                        help="last layer: softmax with from_logits=False "
                             "(the tutorial's model, default) or linear "
                             "with from_logits=True")
    parser.add_argument("--output_dir", default="out/adversarial_mnist")
    parser.add_argument("--verbose", type=int, default=2)
    parser.add_argument("--distribute", default="none",
                        choices=["none", "data_parallel", "multi_worker"],
                        help="data-parallel training over all devices (and "
                             "hosts); --batch_size is the global batch")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    x_train, y_train, x_test, y_test, dataset = load_data(args.dataset,
                                                          args.data_dir)
    if args.epochs is None:
        args.epochs = 5 if dataset == "mnist" else 20
    if args.max_train:
        x_train, y_train = x_train[:args.max_train], y_train[:args.max_train]
    if args.max_test:
        x_test, y_test = x_test[:args.max_test], y_test[:args.max_test]
    print(f"backend={keras.config.backend()} dataset={dataset} "
          f"train={len(x_train)} test={len(x_test)}")
    os.makedirs(args.output_dir, exist_ok=True)

    timings = {}
    scope = distribution_scope(args.distribute)
    if args.distribute != "none":  # Whole batches only (see the docs).
        keep = len(x_train) // args.batch_size * args.batch_size
        x_train, y_train = x_train[:keep], y_train[:keep]
    with scope():
        base = build_cnn(x_train.shape[1:], output=args.output)
        base.compile(**compile_args(args.output))
    start = time.time()
    base.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
             verbose=args.verbose)
    timings["base"] = time.time() - start

    adv_config = nsl.configs.make_adv_reg_config(
        multiplier=args.multiplier, adv_step_size=args.adv_step_size,
        adv_grad_norm="infinity")
    with scope():
        adv_model = nsl.keras.AdversarialRegularization(
            build_cnn(x_train.shape[1:], output=args.output),
            label_keys=["label"], adv_config=adv_config)
        adv_model.compile(**compile_args(args.output))
    start = time.time()
    history = adv_model.fit({"image": x_train, "label": y_train},
                  batch_size=args.batch_size, epochs=args.epochs,
                  verbose=args.verbose)
    timings["adversarial"] = time.time() - start
    # The regularizer's effect, last epoch: a zero adversarial step would
    # make the scaled adversarial loss equal multiplier * labeled loss.
    last = {k: v[-1] for k, v in history.history.items()}
    effect = {"scaled_adversarial_loss": last["scaled_adversarial_loss"],
              "multiplier_x_labeled_loss": args.multiplier * last[
                  "sparse_categorical_crossentropy"]}
    print("last epoch: scaled_adversarial_loss "
          f"{effect['scaled_adversarial_loss']:.4f} vs multiplier x labeled "
          f"loss {effect['multiplier_x_labeled_loss']:.4f}")
    regularized = adv_model.base_model

    models = {"base": base, "adversarial": regularized}
    attacks = {name: fgsm(model, x_test, y_test, args.eps)
               for name, model in models.items()}
    rows = []
    for name, model in models.items():
        rows.append({
            "model": name,
            "clean": accuracy(model, x_test, y_test),
            "fgsm_from_base": accuracy(model, attacks["base"], y_test),
            "fgsm_white_box": accuracy(model, attacks[name], y_test),
            "train_seconds": round(timings[name], 1)})

    print(f"\nAccuracy on {len(x_test)} test images; FGSM L-inf eps "
          f"{args.eps} (backend {keras.config.backend()}, {dataset}, "
          f"{args.epochs} epochs)\n")
    print("| model | clean | FGSM from base | FGSM white-box | train s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['clean']:.4f} | {r['fgsm_from_base']:.4f}"
              f" | {r['fgsm_white_box']:.4f} | {r['train_seconds']} |")

    predictions = {name: predict(model, attacks["base"])[:20]
                   for name, model in models.items()}
    with open(results_path(args.output_dir, dataset, keras.config.backend(),
                           args.output, args.seed), "w") as f:
        json.dump({"args": vars(args), "backend": keras.config.backend(),
                   "dataset": dataset, "rows": rows,
                   "regularizer_effect": effect}, f, indent=2)
    png = os.path.join(args.output_dir, f"fgsm_examples_{dataset}.png")
    if plot_grid(png, attacks["base"], y_test, predictions,
                 f"FGSM (L-inf, eps={args.eps}) against the base model; "
                 "red: base model wrong"):
        print(f"\nWrote {png}")
    return rows


if __name__ == "__main__":
    main()
