"""Loaders of the graph datasets used by the examples and benchmarks.

The data directory comes from an option (`--data_dir`) or the environment
variable `NSL_DATA_DIR`; nothing is downloaded. It holds:

* `cora/cora.content`, `cora/cora.cites`: Cora as distributed by LINQS (used
  by the NSL 1.4 tutorial);
* `planetoid/ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}`: the
  Planetoid splits (Yang et al., 2016) of Cora and Citeseer, loaded as in the
  GCN reference code (Kipf & Welling, 2017).

The library itself never reads these files.
"""

import os
import pickle
import random
import types

import numpy as np

ENV_VAR = "NSL_DATA_DIR"

# The label ids of NSL 1.4's `preprocess_cora_dataset.py`.
CORA_CLASSES = ("Case_Based", "Genetic_Algorithms", "Neural_Networks",
                "Probabilistic_Methods", "Reinforcement_Learning",
                "Rule_Learning", "Theory")


def data_dir(path=None):
    """Returns the data directory: `path`, else `$NSL_DATA_DIR`.

    Raises:
        FileNotFoundError: when neither is set or the directory is missing.
    """
    path = path or os.environ.get(ENV_VAR)
    if not path:
        raise FileNotFoundError(
            f"No data directory: pass --data_dir=<dir> or set {ENV_VAR}=<dir> "
            "(the directory holding cora/ and planetoid/).")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Data directory {path!r} does not exist.")
    return path


def load_linqs_cora(directory):
    """Loads LINQS Cora: 2708 papers, 1433 binary word features, 7 classes.

    Returns:
        A namespace with `features` (float32 `[2708, 1433]`, 0/1), `labels`
        (int64 `[2708]`, ids of `CORA_CLASSES`), `node_ids` (the paper ids,
        str `[2708]`, file order) and `edges` (`(cited, citing)` paper-id
        arrays, 5429 directed citations).
    """
    content = os.path.join(directory, "cora", "cora.content")
    ids, rows, labels = [], [], []
    with open(content, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            ids.append(fields[0])
            rows.append(np.asarray(fields[1:-1], dtype=np.float32))
            labels.append(CORA_CLASSES.index(fields[-1]))
    cited, citing = [], []
    with open(os.path.join(directory, "cora", "cora.cites"),
              encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if fields:
                cited.append(fields[0])
                citing.append(fields[1])
    return types.SimpleNamespace(
        features=np.stack(rows), labels=np.asarray(labels, np.int64),
        node_ids=np.asarray(ids), edges=(np.asarray(cited),
                                         np.asarray(citing)))


def nsl_tutorial_split(num_nodes, train_percentage=0.8, seed=1):
    """The train/test split of NSL 1.4's `preprocess_cora_dataset.py`.

    `random.seed(seed)`; then, in file order, a node is a training node iff
    `random.uniform(0, 1) <= train_percentage`.

    Returns:
        A boolean `[num_nodes]` array, True for training nodes.
    """
    state = random.getstate()
    random.seed(seed)
    try:
        return np.asarray([random.uniform(0, 1) <= train_percentage
                           for _ in range(num_nodes)])
    finally:
        random.setstate(state)


def _load_pickle(directory, name, ext):
    path = os.path.join(directory, "planetoid", f"ind.{name}.{ext}")
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def load_planetoid(directory, name, normalize_features=True):
    """Loads Cora or Citeseer with the Planetoid split, as the GCN code.

    Features of the test nodes are put back in place
    (`test.index`); Citeseer's 15 test-range nodes without features get zero
    features and label -1 (they are in the graph, in no split).

    Args:
        directory: the data directory.
        name: 'cora' or 'citeseer'.
        normalize_features: divide each feature row by its sum (as GCN).

    Returns:
        A namespace with `features` (float32 `[n, d]`), `labels` (int64
        `[n]`, -1 where unknown), `edges` (`(sources, targets)` row arrays,
        both directions of every edge of the undirected graph), and
        `train`, `val`, `test` (row arrays: 140/500/1000 for Cora,
        120/500/1000 for Citeseer).
    """
    import scipy.sparse as sp  # pylint: disable=import-outside-toplevel

    if name not in ("cora", "citeseer"):
        raise ValueError(f"`name` must be 'cora' or 'citeseer'. Received "
                         f"{name!r}")
    x, y, tx, ty, allx, ally, graph = (
        _load_pickle(directory, name, ext)
        for ext in ("x", "y", "tx", "ty", "allx", "ally", "graph"))
    path = os.path.join(directory, "planetoid", f"ind.{name}.test.index")
    with open(path, encoding="utf-8") as f:
        test_index = np.asarray([int(line) for line in f if line.strip()])
    test_range = np.sort(test_index)
    # Citeseer: some test-range rows have no features; fill them with zeros.
    full_range = np.arange(test_range.min(), test_range.max() + 1)
    tx_full = sp.lil_matrix((len(full_range), x.shape[1]), dtype=np.float32)
    tx_full[test_range - test_range.min(), :] = tx
    ty_full = np.zeros((len(full_range), y.shape[1]), np.int64)
    ty_full[test_range - test_range.min(), :] = ty
    features = sp.vstack((allx, tx_full)).tolil()
    features[test_index, :] = features[test_range, :]
    one_hot = np.vstack((ally, ty_full))
    one_hot[test_index, :] = one_hot[test_range, :]
    labels = np.where(one_hot.sum(1) > 0, one_hot.argmax(1), -1)
    features = np.asarray(features.todense(), dtype=np.float32)
    if normalize_features:
        sums = features.sum(1, keepdims=True)
        features = features / np.where(sums > 0, sums, 1)
    sources, targets = [], []
    for node, neighbors in graph.items():
        for neighbor in neighbors:
            sources.append(node)
            targets.append(neighbor)
    sources, targets = np.asarray(sources), np.asarray(targets)
    # The GCN code builds an undirected graph (networkx from_dict_of_lists).
    edges = (np.concatenate([sources, targets]),
             np.concatenate([targets, sources]))
    num_train = len(y)
    return types.SimpleNamespace(
        features=features.astype(np.float32), labels=labels.astype(np.int64),
        edges=edges, train=np.arange(num_train),
        val=np.arange(num_train, num_train + 500), test=test_range,
        num_classes=y.shape[1])
