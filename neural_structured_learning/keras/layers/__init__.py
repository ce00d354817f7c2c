"""Keras layers for graph regularization."""

from neural_structured_learning.keras.layers.neighbor_features import make_missing_neighbor_inputs
from neural_structured_learning.keras.layers.neighbor_features import NeighborFeatures
from neural_structured_learning.keras.layers.pairwise_distance import PairwiseDistance

__all__ = [
    "NeighborFeatures",
    "PairwiseDistance",
    "make_missing_neighbor_inputs",
]
