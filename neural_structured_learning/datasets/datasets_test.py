"""Tests of the bundled datasets: shapes, split, and equality with the source."""

import os
import sys

import numpy as np
import pytest

import neural_structured_learning as nsl

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def test_cora_has_the_planetoid_shapes_and_split():
    cora = nsl.datasets.load_cora()
    assert cora.features.shape == (2708, 1433)
    assert cora.features.dtype == np.float32
    assert set(np.unique(cora.features)) == {0.0, 1.0}
    assert cora.features.sum() == 49216
    # LINQS class sizes, in the Planetoid label order.
    counts = dict(zip(cora.class_names, np.bincount(cora.labels)))
    assert counts == {"Theory": 351, "Reinforcement_Learning": 217,
                      "Genetic_Algorithms": 418, "Neural_Networks": 818,
                      "Probabilistic_Methods": 426, "Case_Based": 298,
                      "Rule_Learning": 180}
    assert cora.edges.shape == (5278, 2)
    assert (cora.edges[:, 0] < cora.edges[:, 1]).all()
    assert len(np.unique(cora.edges, axis=0)) == 5278
    np.testing.assert_array_equal(cora.train, np.arange(140))
    np.testing.assert_array_equal(cora.val, np.arange(140, 640))
    np.testing.assert_array_equal(cora.test, np.arange(1708, 2708))
    np.testing.assert_array_equal(np.bincount(cora.labels[cora.train]),
                                  [20] * 7)


def test_cora_equals_the_planetoid_files():
    data_dir = os.environ.get("NSL_DATA_DIR")
    if not data_dir or not os.path.isdir(os.path.join(data_dir, "planetoid")):
        pytest.skip("NSL_DATA_DIR/planetoid is not there: the bundled Cora "
                    "is not compared with the original ind.cora.* files")
    sys.path.insert(0, os.path.join(REPO, "examples"))
    try:
        import datasets  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.pop(0)
    source = datasets.load_planetoid(data_dir, "cora",
                                     normalize_features=False)
    cora = nsl.datasets.load_cora()
    np.testing.assert_array_equal(cora.features, source.features)
    np.testing.assert_array_equal(cora.labels, source.labels)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(cora, split),
                                      getattr(source, split))
    source_edges = {(a, b) for a, b in zip(*source.edges) if a != b}
    both = {(a, b) for a, b in cora.edges} | {(b, a) for a, b in cora.edges}
    assert both == source_edges
