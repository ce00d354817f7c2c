"""Tests for contrastive.py: InfoNCE against a NumPy reference."""

import numpy as np
import pytest

from neural_structured_learning._testing import assert_allclose
from neural_structured_learning.lib import contrastive


def _reference(sources, targets, weights, temperature):
    b = len(sources)
    h = sources.reshape(b, -1)
    t = targets.reshape(b, -1, h.shape[1])
    h = h / np.linalg.norm(h, axis=1, keepdims=True)
    t = t / np.linalg.norm(t, axis=2, keepdims=True)
    total, norm = 0.0, 0.0
    for i in range(b):
        negatives = [h[i] @ h[k] / temperature for k in range(b) if k != i]
        for j in range(t.shape[1]):
            positive = h[i] @ t[i, j] / temperature
            logits = np.array([positive] + negatives)
            loss = -positive + np.log(np.exp(logits).sum())
            total += weights[i, j] * loss
            norm += weights[i, j]
    return total / max(norm, 1e-12)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 2.0])
def test_matches_reference(temperature):
    rng = np.random.default_rng(0)
    sources = rng.normal(size=(5, 4)).astype("float32")
    targets = rng.normal(size=(5, 3, 4)).astype("float32")
    weights = rng.uniform(size=(5, 3)).astype("float32")
    weights[1, 2] = weights[3, 0] = 0.0  # Padding.
    expected = _reference(sources, targets, weights, temperature)
    assert_allclose(contrastive.neighbor_info_nce(
        sources, targets, weights, temperature), expected, rtol=1e-5)
    # Sample-major merged neighbours and [B * N, 1] weights, as unpacked.
    assert_allclose(contrastive.neighbor_info_nce(
        sources, targets.reshape(15, 4), weights.reshape(15, 1),
        temperature), expected, rtol=1e-5)


def test_cosine_and_edge_cases():
    rng = np.random.default_rng(1)
    sources = rng.normal(size=(4, 2, 3)).astype("float32")  # Flattened.
    targets = rng.normal(size=(4, 2, 6)).astype("float32")
    loss = contrastive.neighbor_info_nce(sources, targets)
    assert_allclose(contrastive.neighbor_info_nce(3 * sources, 0.5 * targets),
                    loss, rtol=1e-5)
    # One sample: no negative, so the neighbour is always picked.
    assert_allclose(contrastive.neighbor_info_nce(
        sources[:1], targets[:1]), 0.0, atol=1e-6)
    # Neighbours equal to their sample, other samples orthogonal: the loss
    # is log(1 + (B - 1) exp(-1 / T)).
    eye = np.eye(3, dtype="float32")
    assert_allclose(contrastive.neighbor_info_nce(
        eye, eye[:, None], temperature=0.5), np.log(1 + 2 * np.exp(-2.0)),
        rtol=1e-5)


def test_unknown_batch_size_in_a_compiled_fit():
    """Traced with the batch size unknown (TF `fit` on a PyDataset)."""
    import keras  # pylint: disable=import-outside-toplevel

    class Model(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

        def compute_loss(self, x=None, y=None, y_pred=None, *args, **kwargs):
            del y, args, kwargs
            nbrs = keras.ops.stack([keras.ops.flip(y_pred, 0), y_pred], axis=1)
            return contrastive.neighbor_info_nce(y_pred, nbrs, None, 0.5)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4)).astype("float32")
    model = Model()
    model.compile("sgd", jit_compile=False)
    # Batches of 4, 4 and 2: TensorFlow traces with the batch size unknown.
    history = model.fit(x, np.zeros(10), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
