r"""Graph-regularized MLP on the Planetoid splits of Cora and Citeseer.

The semi-supervised benchmark of Planetoid/GCN: 140 (Cora) or 120 (Citeseer)
labeled nodes, 500 validation and 1000 test nodes; every other node is
unlabeled but in the graph. The plain MLP only sees the labeled nodes.
Predictions of every model use the MLP alone: no graph at inference.

Two recipes for the graph-regularized MLP (`--recipe`):

* `propagation` (default, recommended; new in this version): every node is
  a batch row (unlabeled ones labeled -1), its neighbours are its top
  `max_neighbors` nodes by personalized PageRank (`nsl.tools.ppr_neighbors`),
  and the graph loss is `nsl.configs.PropagationConfig`'s:

      z_i = 0.1 f(x_i) + 0.9 sum_j w_ij f(x_ij) / sum_j w_ij
      loss = CE(labeled, f) + multiplier * (CE(labeled, z)
             + mean_i KL(softmax(z_i / 0.5) || softmax(f(x_i))))

  i.e. APPNP's propagated prediction trained on the labels and distilled,
  sharpened, into the MLP on every node.
* `nsl14`: NSL 1.4's loss, pulling the predicted class distributions of each
  labeled node's neighbours (labeled or not, in the graph plus its 2-hop
  edges) towards the labeled node's:

      loss = CE(labeled) + multiplier * sum_ij w_ij ||softmax(f(x_i))
                                        - softmax(f(x_ij))||^2 / nnz(w)

  with w_ij = 1 for an edge and `hop2_weight` for a 2-hop pair; up to
  `max_neighbors` neighbours per labeled node sampled uniformly every
  epoch (one batch = all labeled nodes).

Neighbours are looked up per batch by `nsl.keras.NeighborBatchDataset`.
Hyper-parameters (`DEFAULTS`, updated by `RECIPES`) were chosen on the 500
validation nodes (see docs/graph_regularization.md); the weights of the
epoch of best validation accuracy are kept; the test nodes are used once,
for the reported accuracy.

Usage:

    NSL_DATA_DIR=/path/to/data python examples/graph_mlp_planetoid.py \
        [--dataset cora|citeseer] [--seeds 0 1 2 3 4] \
        [--recipe propagation|nsl14] [--multiplier 1.0] ...
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import datasets  # noqa: E402
import neural_structured_learning as nsl  # noqa: E402

FEATURE = "feature"
DEFAULTS = dict(hidden=64, input_dropout=0.0, dropout=0.5, weight_decay=5e-4,
                learning_rate=0.01, epochs=300, multiplier=10.0,
                max_neighbors=20, hop2_weight=0.5, distance_type="l2",
                transform_fn="softmax", sampling="uniform",
                all_nodes=False, contrastive_temperature=0.0,
                embedding_layer="", batch_size=0, neighborhood="hops",
                neighborhood_top_k=10, ppr_alpha=0.1, khop_k=2,
                propagation=False, self_weight=0.1,
                propagation_temperature=0.5)


# The recommended recipe's changes from DEFAULTS (NSL 1.4's recipe): chosen on
# the validation nodes of Cora and Citeseer (docs/graph_regularization.md).
RECIPES = {
    "nsl14": {},
    "propagation": dict(all_nodes=True, batch_size=512, neighborhood="ppr",
                        max_neighbors=5, neighborhood_top_k=5,
                        propagation=True, multiplier=1.0,
                        weight_decay=2.5e-4, epochs=150),
}


def load(name, data_dir=None):
    return datasets.load_planetoid(datasets.data_dir(data_dir), name)


def graph_with_hops(edges, num_nodes, hop2_weight):
    """The graph (weight 1) plus its 2-hop edges (weight `hop2_weight`)."""
    adjacency = sp.csr_matrix(
        (np.ones(len(edges[0]), np.float32), edges),
        shape=(num_nodes, num_nodes))
    adjacency.data[:] = 1
    if hop2_weight <= 0:
        return adjacency
    two_hop = adjacency @ adjacency
    two_hop.data[:] = hop2_weight
    return adjacency.maximum(two_hop)  # Self-loops are dropped later.


def neighborhood_graph(data, h):
    """The graph whose neighbours are sampled, per `h["neighborhood"]`.

    "hops" (default): `graph_with_hops` (the graph plus 2-hop edges of
    weight `hop2_weight`); "ppr": each node's `neighborhood_top_k` nodes by
    personalized PageRank (`nsl.tools.ppr_neighbors`, teleport `ppr_alpha`);
    "khop": each node's `neighborhood_top_k` heaviest nodes within `khop_k`
    hops (`nsl.tools.khop_neighbors`, symmetric normalisation).
    """
    num_nodes = len(data.labels)
    if h["neighborhood"] == "hops":
        return graph_with_hops(data.edges, num_nodes, h["hop2_weight"])
    adjacency = graph_with_hops(data.edges, num_nodes, 0.0)
    if h["neighborhood"] == "ppr":
        return nsl.tools.ppr_neighbors(
            adjacency, alpha=h["ppr_alpha"], top_k=h["neighborhood_top_k"],
            progress=False).to_scipy()
    if h["neighborhood"] == "khop":
        return nsl.tools.khop_neighbors(
            adjacency, k=h["khop_k"], top_k=h["neighborhood_top_k"],
            progress=False).to_scipy()
    raise ValueError(f"Unknown neighborhood {h['neighborhood']!r}.")


def make_mlp(num_features, num_classes, hidden, input_dropout, dropout,
             weight_decay):
    """[Dropout] -> Dense(hidden, relu) -> Dropout -> Dense(classes)."""
    regularizer = keras.regularizers.L2(weight_decay) if weight_decay else None
    return keras.Sequential([
        keras.Input((num_features,), name=FEATURE),
        keras.layers.Dropout(input_dropout),
        keras.layers.Dense(hidden, "relu", kernel_regularizer=regularizer,
                           name="hidden"),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(num_classes),
    ])


class _BestValidation(keras.callbacks.Callback):
    """Keeps the weights of the epoch of best validation accuracy."""

    def __init__(self, base, data, every=5):
        super().__init__()
        self.base, self.data, self.every = base, data, every
        self.best, self.best_epoch, self.best_weights = -1.0, 0, None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        predictions = self.base.predict(self.data.features[self.data.val],
                                        verbose=0, batch_size=4096)
        accuracy = float(np.mean(predictions.argmax(-1)
                                 == self.data.labels[self.data.val]))
        if accuracy > self.best:
            self.best, self.best_epoch = accuracy, epoch + 1
            self.best_weights = self.base.get_weights()


def run(data, graph_regularized=True, seed=0, **hparams):
    """Trains a fresh MLP, plain or graph-regularized.

    Returns:
        A dict with `test_accuracy` and `val_accuracy` (at the epoch of best
        validation accuracy), `best_epoch` and `seconds`.
    """
    h = dict(DEFAULTS, **hparams)
    keras.utils.set_random_seed(seed)
    num_nodes = len(data.labels)
    base = make_mlp(data.features.shape[1], data.num_classes, h["hidden"],
                    h["input_dropout"], h["dropout"], h["weight_decay"])
    labels = np.full(num_nodes, -1)
    labels[data.train] = data.labels[data.train]  # Only these are seen.
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.Adam(h["learning_rate"])
    best = _BestValidation(base, data)
    start = time.time()
    if graph_regularized:
        # New in this version (issue 12): a contrastive loss (temperature
        # > 0), on a hidden layer, with every node as a batch row (the
        # labeled loss on labeled rows only).
        config = nsl.configs.make_graph_reg_config(
            max_neighbors=h["max_neighbors"], multiplier=h["multiplier"],
            distance_type=h["distance_type"], sum_over_axis=-1,
            transform_fn=h["transform_fn"],
            contrastive_temperature=h["contrastive_temperature"] or None,
            propagation_self_weight=(h["self_weight"] if h["propagation"]
                                     else None),
            propagation_temperature=h["propagation_temperature"])
        model = nsl.keras.GraphRegularization(
            base, config, embedding_layer=h["embedding_layer"] or None,
            unlabeled_label=-1 if h["all_nodes"] else None)
        graph = neighborhood_graph(data, h)
        train = nsl.keras.NeighborBatchDataset(
            {FEATURE: data.features}, labels, graph, config.neighbor_config,
            seeds="all" if h["all_nodes"] else None,
            unlabeled_label=-1 if h["all_nodes"] else None,
            # batch_size 0: the labeled nodes' count; -1: every node.
            batch_size=(num_nodes if h["batch_size"] < 0
                        else h["batch_size"] or len(data.train)),
            sampling=h["sampling"], seed=seed)
    else:
        # The same batches without neighbours; the wrapper with the default
        # config (max_neighbors=0) only routes the feature dict to the MLP.
        model = nsl.keras.GraphRegularization(base)
        train = nsl.keras.NeighborBatchDataset(
            {FEATURE: data.features}, labels, None,
            nsl.configs.GraphNeighborConfig(), batch_size=len(data.train),
            seed=seed)
    model.compile(optimizer, loss)
    model.fit(train, epochs=h["epochs"], verbose=0, callbacks=[best])
    seconds = time.time() - start
    base.set_weights(best.best_weights)
    predictions = base.predict(data.features[data.test], verbose=0,
                               batch_size=4096)
    return dict(test_accuracy=float(np.mean(
        predictions.argmax(-1) == data.labels[data.test])),
        val_accuracy=best.best, best_epoch=best.best_epoch, seconds=seconds)


def add_hparam_flags(parser, defaults=None, prefix=""):
    """Adds a `--{prefix}{name}` flag for each hyper-parameter of DEFAULTS."""
    for name, value in (defaults or DEFAULTS).items():
        kind = ((lambda text: text.lower() in ("1", "true", "yes"))
                if isinstance(value, bool) else type(value))
        parser.add_argument(f"--{prefix}{name}", type=kind, default=value)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=None,
                        help=f"data directory (default ${datasets.ENV_VAR})")
    parser.add_argument("--dataset", default="cora",
                        choices=["cora", "citeseer"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--recipe", default="propagation",
                        choices=list(RECIPES))
    add_hparam_flags(parser)
    args = parser.parse_args(argv)
    data = load(args.dataset, args.data_dir)
    # The flags given explicitly (those not at DEFAULTS) override the
    # recipe, which only the graph-regularized MLP uses.
    explicit = {name: getattr(args, name) for name in DEFAULTS
                if getattr(args, name) != DEFAULTS[name]}
    hparams = dict(DEFAULTS, **RECIPES[args.recipe], **explicit)
    print(f"backend={keras.backend.backend()} dataset={args.dataset} "
          f"train={len(data.train)} val={len(data.val)} "
          f"test={len(data.test)} {hparams}")
    lines = ["| model | val accuracy | test accuracy (mean ± std) | seeds |",
             "|---|---|---|---|"]
    for graph_regularized in (False, True):
        name = "graph-regularized MLP" if graph_regularized else "MLP"
        results = [run(data, graph_regularized, seed,
                       **(hparams if graph_regularized
                          else dict(DEFAULTS, **explicit)))
                   for seed in args.seeds]
        for seed, result in zip(args.seeds, results):
            print(f"  {name} seed={seed}: test "
                  f"{100 * result['test_accuracy']:.2f}% val "
                  f"{100 * result['val_accuracy']:.2f}% (epoch "
                  f"{result['best_epoch']}, {result['seconds']:.1f} s)",
                  flush=True)
        test = 100 * np.array([r["test_accuracy"] for r in results])
        val = 100 * np.array([r["val_accuracy"] for r in results])
        lines.append(f"| {name} | {val.mean():.2f} | {test.mean():.2f} ± "
                     f"{test.std():.2f} | {len(results)} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
