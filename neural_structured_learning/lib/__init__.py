"""Core functions of Neural Structured Learning, in `keras.ops`.

They run on every Keras backend (TensorFlow, JAX, PyTorch) and accept single
tensors as well as dicts and lists of tensors.
"""

from neural_structured_learning.lib.abstract_gen_neighbor import GenNeighbor
from neural_structured_learning.lib.adversarial_neighbor import gen_adv_neighbor
from neural_structured_learning.lib.contrastive import neighbor_info_nce
from neural_structured_learning.lib.decay import decay_over_time
from neural_structured_learning.lib.distances import jensen_shannon_divergence
from neural_structured_learning.lib.distances import kl_divergence
from neural_structured_learning.lib.distances import pairwise_distance_wrapper
from neural_structured_learning.lib.gradients import value_and_input_gradients
from neural_structured_learning.lib.masks import apply_feature_mask
from neural_structured_learning.lib.neighbors import replicate_embeddings
from neural_structured_learning.lib.neighbors import strip_neighbor_features
from neural_structured_learning.lib.neighbors import unpack_neighbor_features
from neural_structured_learning.lib.norms import maximize_within_unit_norm
from neural_structured_learning.lib.norms import normalize
from neural_structured_learning.lib.norms import project_to_ball
from neural_structured_learning.lib.propagation import distillation_loss
from neural_structured_learning.lib.propagation import neighborhood_prediction
from neural_structured_learning.lib.regularizer import adv_regularizer
from neural_structured_learning.lib.regularizer import virtual_adv_regularizer
from neural_structured_learning.lib.sampling import random_in_norm_ball
from neural_structured_learning.lib.targets import get_target_indices

__all__ = [
    "GenNeighbor",
    "adv_regularizer",
    "apply_feature_mask",
    "decay_over_time",
    "distillation_loss",
    "gen_adv_neighbor",
    "get_target_indices",
    "jensen_shannon_divergence",
    "kl_divergence",
    "maximize_within_unit_norm",
    "neighborhood_prediction",
    "neighbor_info_nce",
    "normalize",
    "pairwise_distance_wrapper",
    "project_to_ball",
    "random_in_norm_ball",
    "replicate_embeddings",
    "strip_neighbor_features",
    "unpack_neighbor_features",
    "value_and_input_gradients",
    "virtual_adv_regularizer",
]
