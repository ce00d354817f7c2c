"""Feature masks: which features an adversarial perturbation may change."""

import numpy as np
from keras import ops

from neural_structured_learning.lib import _tensors


def apply_feature_mask(features, feature_mask=None):
    """Returns `features * feature_mask` (the mask broadcasts).

    Args:
        features: a tensor.
        feature_mask: `None` (no mask), or values in [0, 1].

    Raises:
        ValueError: if a (concrete) mask value is outside [0, 1].
    """
    if feature_mask is None:
        return features
    mask = _tensors.maybe_numpy(feature_mask)
    if mask is not None and (np.any(mask < 0) or np.any(mask > 1)):
        raise ValueError(
            "`feature_mask` values must be in [0, 1]. Received values in "
            f"[{mask.min()}, {mask.max()}].")
    features = ops.convert_to_tensor(features)
    return features * ops.cast(feature_mask, features.dtype)
