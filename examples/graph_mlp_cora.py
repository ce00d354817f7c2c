r"""Graph regularization of an MLP on Cora: NSL's tutorial, on Keras 3.

The setting of NSL 1.4's `graph_keras_mlp_cora` tutorial:

* LINQS Cora (2708 papers, 1433 binary word features, 7 classes), the
  citation graph made undirected;
* the tutorial's ~80/20 train/test split (`random.seed(1)`, 2155/553
  nodes); test nodes are unlabeled neighbours during training;
* MLP 1433 -> 50 -> 50 -> 7 (ReLU, dropout 0.5), Adam, batch 128, 100
  epochs;
* graph regularization: L2 on the logits, `sum_over_axis=-1`, multiplier
  0.1, the top-weight neighbours (`max_neighbors`, 1 in the tutorial).

The base model and each graph-regularized model start from fresh weights
(NSL 1.4's script wrapped the already-trained base model). Neighbours are
looked up per batch (`nsl.keras.NeighborBatchDataset`), no packing step; with
`sampling='top'` they are the ones NSL 1.4's `pack_nbrs` would pack.

Usage:

    NSL_DATA_DIR=/path/to/data python examples/graph_mlp_cora.py \
        [--max_neighbors 1 2 3] [--seeds 0 1 2 3 4] [--epochs 100] \
        [--plot accuracy.png]

It prints a Markdown table of test accuracy (mean and std over the seeds).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import datasets  # noqa: E402
import neural_structured_learning as nsl  # noqa: E402

FEATURE = "words"


def load(data_dir=None):
    """Cora with the tutorial's split; test labels are hidden (-1)."""
    cora = datasets.load_linqs_cora(datasets.data_dir(data_dir))
    train = datasets.nsl_tutorial_split(len(cora.labels))
    cora.train = np.flatnonzero(train)
    cora.test = np.flatnonzero(~train)
    cora.train_labels = np.where(train, cora.labels, -1)
    return cora


def make_mlp(num_features, num_classes, hidden=(50, 50), dropout=0.5):
    """The tutorial's MLP, ending in logits."""
    inputs = keras.Input((num_features,), name=FEATURE)
    x = inputs
    for units in hidden:
        x = keras.layers.Dense(units, activation="relu")(x)
        x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


class _TestAccuracy(keras.callbacks.Callback):
    """Records the base model's test accuracy after every epoch."""

    def __init__(self, base, features, labels):
        super().__init__()
        self.base, self.features, self.labels = base, features, labels
        self.curve = []

    def on_epoch_end(self, epoch, logs=None):
        predictions = self.base.predict(self.features, verbose=0,
                                        batch_size=1024)
        self.curve.append(float(np.mean(
            predictions.argmax(-1) == self.labels)))


def run(cora, max_neighbors=0, multiplier=0.1, epochs=100, batch_size=128,
        seed=0, record_curve=False, propagation_self_weight=None):
    """Trains a fresh MLP (graph-regularized if `max_neighbors > 0`).

    With `propagation_self_weight` (new in this version), the graph loss is
    `nsl.configs.PropagationConfig`'s instead of the tutorial's L2, and every
    node (the unlabeled test nodes too) is a batch row.

    Returns:
        A dict with `test_accuracy`, `seconds` and, with `record_curve`,
        `curve` (test accuracy per epoch).
    """
    keras.utils.set_random_seed(seed)
    base = make_mlp(cora.features.shape[1], len(datasets.CORA_CLASSES))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    test_x, test_y = cora.features[cora.test], cora.labels[cora.test]
    callbacks = []
    if record_curve:
        callbacks.append(_TestAccuracy(base, test_x, test_y))
    start = time.time()
    if max_neighbors == 0:
        base.compile("adam", loss, metrics=["accuracy"])
        base.fit(cora.features[cora.train], cora.labels[cora.train],
                 batch_size=batch_size, epochs=epochs, verbose=0,
                 callbacks=callbacks)
    else:
        config = nsl.configs.make_graph_reg_config(
            max_neighbors=max_neighbors, multiplier=multiplier,
            distance_type="l2", sum_over_axis=-1,
            propagation_self_weight=propagation_self_weight)
        every_node = propagation_self_weight is not None
        unlabeled = -1 if every_node else None
        model = nsl.keras.GraphRegularization(base, config,
                                              unlabeled_label=unlabeled)
        model.compile("adam", loss, metrics=["accuracy"])
        data = nsl.keras.NeighborBatchDataset(
            {FEATURE: cora.features}, cora.train_labels, cora.edges,
            config.neighbor_config, node_ids=cora.node_ids, undirected=True,
            batch_size=batch_size, sampling="top", seed=seed,
            seeds="all" if every_node else None, unlabeled_label=unlabeled)
        model.fit(data, epochs=epochs, verbose=0, callbacks=callbacks)
    seconds = time.time() - start
    predictions = base.predict(test_x, verbose=0, batch_size=1024)
    result = dict(test_accuracy=float(np.mean(predictions.argmax(-1)
                                              == test_y)),
                  seconds=seconds)
    if record_curve:
        result["curve"] = callbacks[0].curve
    return result


def markdown_table(results):
    """`results`: {(model, max_neighbors): [accuracy per seed]}."""
    lines = ["| model | max_neighbors | test accuracy (mean ± std) | seeds |",
             "|---|---|---|---|"]
    for (name, neighbors), accuracies in results.items():
        accuracies = 100 * np.asarray(accuracies)
        lines.append(f"| {name} | {neighbors} | {accuracies.mean():.2f} ± "
                     f"{accuracies.std():.2f} | {len(accuracies)} |")
    return "\n".join(lines)


def plot(curves, path):
    """Writes the test accuracy curves (mean over seeds) to a PNG."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    figure, axes = plt.subplots(figsize=(7, 4))
    for label, runs in curves.items():
        axes.plot(np.arange(1, len(runs[0]) + 1),
                  100 * np.mean(runs, axis=0), label=label)
    axes.set_xlabel("epoch")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(f"Cora (NSL tutorial split), {keras.backend.backend()}")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=None,
                        help=f"data directory (default ${datasets.ENV_VAR})")
    parser.add_argument("--max_neighbors", type=int, nargs="+",
                        default=[1, 2, 3])
    parser.add_argument("--multiplier", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--plot", default=None,
                        help="write test-accuracy curves to this PNG")
    args = parser.parse_args(argv)
    cora = load(args.data_dir)
    print(f"backend={keras.backend.backend()} train={len(cora.train)} "
          f"test={len(cora.test)} edges={len(cora.edges[0])}")
    results, curves = {}, {}
    for neighbors in [0] + args.max_neighbors:
        name = "base MLP" if neighbors == 0 else "graph-regularized MLP"
        for seed in args.seeds:
            result = run(cora, neighbors, args.multiplier, args.epochs,
                         args.batch_size, seed, record_curve=bool(args.plot))
            results.setdefault((name, neighbors), []).append(
                result["test_accuracy"])
            if args.plot:
                label = name if neighbors == 0 else f"{name}, N={neighbors}"
                curves.setdefault(label, []).append(result["curve"])
            print(f"  {name} max_neighbors={neighbors} seed={seed}: "
                  f"{100 * result['test_accuracy']:.2f}% "
                  f"({result['seconds']:.1f} s)", flush=True)
    print(markdown_table(results))
    if args.plot:
        plot(curves, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
