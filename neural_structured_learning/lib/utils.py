"""NSL 1.4's `nsl.lib.utils` names, now defined one concept per module.

* `norms`: `normalize`, `maximize_within_unit_norm`, `project_to_ball`;
* `sampling`: `random_in_norm_ball`;
* `targets`: `get_target_indices`;
* `decay`: `decay_over_time`;
* `masks`: `apply_feature_mask`;
* `neighbors`: `replicate_embeddings`, `strip_neighbor_features`,
  `unpack_neighbor_features`, `NeighborFeatureError`;
* `neural_structured_learning._core.naming`: `neighbor_feature_name`,
  `neighbor_weight_name`.

Importing them from here keeps working.
"""

from neural_structured_learning._core.naming import neighbor_feature_name
from neural_structured_learning._core.naming import neighbor_weight_name
from neural_structured_learning.lib._tensors import is_float
from neural_structured_learning.lib._tensors import maybe_numpy
from neural_structured_learning.lib.decay import decay_over_time
from neural_structured_learning.lib.masks import apply_feature_mask
from neural_structured_learning.lib.neighbors import NeighborFeatureError
from neural_structured_learning.lib.neighbors import replicate_embeddings
from neural_structured_learning.lib.neighbors import strip_neighbor_features
from neural_structured_learning.lib.neighbors import unpack_neighbor_features
from neural_structured_learning.lib.norms import maximize_within_unit_norm
from neural_structured_learning.lib.norms import normalize
from neural_structured_learning.lib.norms import project_to_ball
from neural_structured_learning.lib.sampling import random_in_norm_ball
from neural_structured_learning.lib.targets import get_target_indices

__all__ = [
    "NeighborFeatureError",
    "apply_feature_mask",
    "decay_over_time",
    "get_target_indices",
    "is_float",
    "maximize_within_unit_norm",
    "maybe_numpy",
    "neighbor_feature_name",
    "neighbor_weight_name",
    "normalize",
    "project_to_ball",
    "random_in_norm_ball",
    "replicate_embeddings",
    "strip_neighbor_features",
    "unpack_neighbor_features",
]
