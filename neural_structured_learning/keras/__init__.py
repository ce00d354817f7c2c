"""Keras 3 wrappers and layers for structured-signal training."""

from neural_structured_learning.keras import layers
from neural_structured_learning.keras import terms
from neural_structured_learning.keras.adversarial_regularization import adversarial_loss
from neural_structured_learning.keras.adversarial_regularization import AdversarialRegularization
from neural_structured_learning.keras.terms.vat import default_vat_config
from neural_structured_learning.keras.labeled_unlabeled_batches import LabeledUnlabeledBatches
from neural_structured_learning.keras.regularized_model import RegularizedModel
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
    "RegularizedModel",
    "adversarial_loss",
    "default_vat_config",
    "layers",
    "make_neighbor_batch_tf_dataset",
    "terms",
]
