"""Small real datasets that ship with the library, for examples and tests.

Nothing here downloads anything and the library never needs these files:
they let the quick starts and tests run offline. Loading needs only NumPy.

* `load_cora()`: the Cora citation graph with the Planetoid split (Yang et
  al., 2016), the standard benchmark of graph learning, stored in
  `cora.npz` (90 KB).

Cora comes from the Planetoid repository (github.com/kimiyoung/planetoid,
MIT License, Copyright (c) 2016 Zhilin Yang; see `LICENSE_planetoid` beside
this file), converted to NumPy arrays; the same nodes, features, labels,
edges and split as the files `ind.cora.*` that GCN, PyG and DGL load.
"""

import os
import types

import numpy as np

_DIR = os.path.dirname(os.path.abspath(__file__))

# The Planetoid files store one-hot labels without names; this is the order
# of the LINQS classes that the counts (351, 217, 418, 818, 426, 298, 180)
# identify.
CORA_CLASSES = ("Theory", "Reinforcement_Learning", "Genetic_Algorithms",
                "Neural_Networks", "Probabilistic_Methods", "Case_Based",
                "Rule_Learning")


def load_cora():
    """Loads Cora with the Planetoid split: 2708 papers, 7 classes.

    Features are the 1433 binary bag-of-words indicators of each paper (not
    row-normalised; GCN's code divides each row by its sum). The graph is
    the undirected citation graph, 5278 edges without self-loops, given once
    per edge (`edges[:, 0] < edges[:, 1]`); pass both directions, or
    `undirected=True` where a tool takes it, to use it as undirected.

    Returns:
        A namespace with `features` (float32 `[2708, 1433]`, 0/1), `labels`
        (int64 `[2708]`, indices into `class_names`), `edges` (int64
        `[5278, 2]`), `train`, `val`, `test` (int64 row indices: 140 = 20
        labels per class, 500 and 1000 nodes: the Planetoid split) and
        `class_names`.

    Example:
    >>> cora = nsl.datasets.load_cora()
    >>> cora.features.shape, cora.edges.shape, np.bincount(cora.labels[cora.train])
    ((2708, 1433), (5278, 2), array([20, 20, 20, 20, 20, 20, 20]))
    """
    with np.load(os.path.join(_DIR, "cora.npz")) as data:
        arrays = {key: data[key] for key in data.files}
    indptr = arrays["feature_indptr"].astype(np.int64)
    features = np.zeros((len(indptr) - 1, 1433), np.float32)
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    features[rows, arrays["feature_indices"].astype(np.int64)] = 1.0
    return types.SimpleNamespace(
        features=features, labels=arrays["labels"].astype(np.int64),
        edges=arrays["edges"].astype(np.int64),
        train=arrays["train"].astype(np.int64),
        val=arrays["val"].astype(np.int64),
        test=arrays["test"].astype(np.int64),
        class_names=CORA_CLASSES)
