"""Keras 3 wrappers and layers for structured-signal training."""

from neural_structured_learning.keras import layers
from neural_structured_learning.keras.adversarial_regularization import adversarial_loss
from neural_structured_learning.keras.adversarial_regularization import AdversarialRegularization
from neural_structured_learning.keras.virtual_adversarial_regularization import default_vat_config
from neural_structured_learning.keras.virtual_adversarial_regularization import LabeledUnlabeledBatches
from neural_structured_learning.keras.virtual_adversarial_regularization import VirtualAdversarialRegularization
from neural_structured_learning.keras.graph_regularization import GraphRegularization
from neural_structured_learning.keras.neighbor_batches import make_neighbor_batch_tf_dataset
from neural_structured_learning.keras.neighbor_batches import NeighborBatchDataset

__all__ = [
    "AdversarialRegularization",
    "LabeledUnlabeledBatches",
    "VirtualAdversarialRegularization",
    "GraphRegularization",
    "NeighborBatchDataset",
    "adversarial_loss",
    "default_vat_config",
    "layers",
    "make_neighbor_batch_tf_dataset",
]
