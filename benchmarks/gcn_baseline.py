r"""A plain 2-layer GCN (Kipf & Welling, 2017) on the Planetoid splits.

The reference point of issue 12 for the graph-regularized MLP: a GCN
aggregates neighbour features at inference, the MLP does not. This is a
baseline, not library code. As the GCN reference code:

    A_hat = D^-1/2 (A + I) D^-1/2
    logits = A_hat @ relu(A_hat @ dropout(X) @ W0) -> dropout -> @ W1

hidden 16, dropout 0.5 (on the input of both layers), no biases, Glorot
weights, weight decay 5e-4 * ||W0||^2 / 2 on the first layer only, Adam with
learning rate 0.01, 200 full-batch epochs, cross-entropy over the 140 (Cora)
or 120 (Citeseer) training nodes. The weights of the epoch of best
validation accuracy (500 validation nodes, every epoch) are kept (the
reference code stops early on validation loss instead); the 1000 test nodes
are used once.

Written with `keras.ops` only (backend-agnostic); `A_hat` is a dense float32
matrix (2708^2 or 3327^2 entries: 29 or 44 MB).

Usage:

    NSL_DATA_DIR=/path/to/data KERAS_BACKEND=jax \
        python benchmarks/gcn_baseline.py [--dataset cora|citeseer] \
        [--seeds 0 1 2 3 4]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "examples"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import datasets  # noqa: E402

DEFAULTS = dict(hidden=16, dropout=0.5, weight_decay=5e-4,
                learning_rate=0.01, epochs=200)


def normalized_adjacency(edges, num_nodes):
    """`D^-1/2 (A + I) D^-1/2` of the undirected graph, dense float32."""
    adjacency = sp.csr_matrix(
        (np.ones(len(edges[0]), np.float32), edges),
        shape=(num_nodes, num_nodes))
    adjacency.data[:] = 1  # Duplicate edges count once.
    adjacency = adjacency.maximum(adjacency.T)
    adjacency = adjacency + sp.eye(num_nodes, dtype=np.float32)
    adjacency.data[:] = 1  # Existing self-loops count once.
    degree = np.asarray(adjacency.sum(1)).ravel()
    scale = sp.diags(1.0 / np.sqrt(degree))
    return np.asarray((scale @ adjacency @ scale).todense(), np.float32)


class GraphConv(keras.layers.Layer):
    """`A_hat @ x @ W` with a fixed `A_hat` (a non-trainable weight)."""

    def __init__(self, units, adjacency, kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self._adjacency_value = adjacency
        self.kernel_regularizer = kernel_regularizer

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units), initializer="glorot_uniform",
            regularizer=self.kernel_regularizer, name="kernel")
        self.adjacency = self.add_weight(
            shape=self._adjacency_value.shape,
            initializer=keras.initializers.Constant(self._adjacency_value),
            trainable=False, name="adjacency")

    def call(self, inputs):
        return keras.ops.matmul(self.adjacency,
                                keras.ops.matmul(inputs, self.kernel))


def make_gcn(num_features, num_classes, adjacency, hidden, dropout,
             weight_decay):
    """Dropout -> GraphConv(hidden, relu) -> Dropout -> GraphConv(classes).

    The batch must be every node, in row order (`batch_size=num_nodes`).
    """
    # The reference code adds weight_decay * tf.nn.l2_loss(W0) =
    # weight_decay * sum(W0^2) / 2; keras' L2(l) adds l * sum(W0^2).
    regularizer = (keras.regularizers.L2(weight_decay / 2)
                   if weight_decay else None)
    inputs = keras.Input(batch_shape=(len(adjacency), num_features))
    x = keras.layers.Dropout(dropout)(inputs)
    x = GraphConv(hidden, adjacency, regularizer, name="gcn_hidden")(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Dropout(dropout)(x)
    outputs = GraphConv(num_classes, adjacency, name="gcn_output")(x)
    return keras.Model(inputs, outputs)


class _BestValidation(keras.callbacks.Callback):
    """Keeps the trainable weights of the epoch of best validation accuracy."""

    def __init__(self, data):
        super().__init__()
        self.data = data
        self.best, self.best_epoch, self.best_weights = -1.0, 0, None

    def on_epoch_end(self, epoch, logs=None):
        accuracy = _accuracy(self.model, self.data, self.data.val)
        if accuracy > self.best:
            self.best, self.best_epoch = accuracy, epoch + 1
            self.best_weights = [np.array(w) for w in
                                 self.model.get_weights()]


def _accuracy(model, data, rows):
    logits = model.predict(data.features, batch_size=len(data.features),
                           verbose=0)
    return float(np.mean(logits[rows].argmax(-1) == data.labels[rows]))


def run_gcn(data, seed=0, **hparams):
    """Trains a fresh GCN on `data` (a `datasets.load_planetoid` namespace).

    Returns:
        A dict with `test_accuracy` and `val_accuracy` (at the epoch of best
        validation accuracy), `best_epoch` and `seconds` (training).
    """
    h = dict(DEFAULTS, **hparams)
    keras.utils.set_random_seed(seed)
    num_nodes = len(data.labels)
    adjacency = normalized_adjacency(data.edges, num_nodes)
    model = make_gcn(data.features.shape[1], data.num_classes, adjacency,
                     h["hidden"], h["dropout"], h["weight_decay"])
    # Cross-entropy averaged over the training nodes: the loss averages over
    # all rows, so the training rows weigh num_nodes / num_train.
    labels = np.zeros(num_nodes, np.int64)
    labels[data.train] = data.labels[data.train]
    weights = np.zeros(num_nodes, np.float32)
    weights[data.train] = num_nodes / len(data.train)
    model.compile(keras.optimizers.Adam(h["learning_rate"]),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    best = _BestValidation(data)
    start = time.time()
    model.fit(data.features, labels, sample_weight=weights,
              batch_size=num_nodes, epochs=h["epochs"], shuffle=False,
              verbose=0, callbacks=[best])
    seconds = time.time() - start
    model.set_weights(best.best_weights)
    return dict(test_accuracy=_accuracy(model, data, data.test),
                val_accuracy=best.best, best_epoch=best.best_epoch,
                seconds=seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=None,
                        help=f"data directory (default ${datasets.ENV_VAR})")
    parser.add_argument("--dataset", default="cora",
                        choices=["cora", "citeseer"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    for name, value in DEFAULTS.items():
        parser.add_argument(f"--{name}", type=type(value), default=value)
    args = parser.parse_args(argv)
    data = datasets.load_planetoid(datasets.data_dir(args.data_dir),
                                   args.dataset)
    hparams = {name: getattr(args, name) for name in DEFAULTS}
    print(f"backend={keras.backend.backend()} dataset={args.dataset} "
          f"{hparams}", flush=True)
    results = []
    for seed in args.seeds:
        result = run_gcn(data, seed, **hparams)
        results.append(result)
        print(f"  GCN seed={seed}: test {100 * result['test_accuracy']:.2f}% "
              f"val {100 * result['val_accuracy']:.2f}% (epoch "
              f"{result['best_epoch']}, {result['seconds']:.1f} s)",
              flush=True)
    test = 100 * np.array([r["test_accuracy"] for r in results])
    val = 100 * np.array([r["val_accuracy"] for r in results])
    seconds = np.mean([r["seconds"] for r in results])
    print("| model | val acc | test acc (mean ± std) | seeds | s/run |")
    print("|---|---|---|---|---|")
    print(f"| GCN | {val.mean():.2f} | {test.mean():.2f} ± {test.std():.2f} "
          f"| {len(results)} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
