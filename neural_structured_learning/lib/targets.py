"""Target classes of targeted adversarial attacks."""

import keras
from keras import ops

from neural_structured_learning.configs import configs


def get_target_indices(logits, labels, adv_target_config):
    """Returns the class each example's targeted attack aims at.

    * SECOND: the class with the second-highest logit.
    * LEAST: the class with the lowest logit.
    * RANDOM: a uniformly random class (seeded by `random_seed`; values are
      not those of NSL 1.4, which used TensorFlow's RNG).
    * GROUND_TRUTH: `labels`.

    Args:
        logits: a tensor `[batch, num_classes]`.
        labels: integer labels `[batch]`.
        adv_target_config: an `AdvTargetConfig`.

    Returns:
        An int32 tensor `[batch]`.
    """
    method = adv_target_config.target_method
    logits = ops.convert_to_tensor(logits)
    if method == configs.AdvTargetType.SECOND:
        return ops.cast(ops.top_k(logits, 2)[1][:, 1], "int32")
    if method == configs.AdvTargetType.LEAST:
        return ops.cast(ops.argmin(logits, axis=-1), "int32")
    if method == configs.AdvTargetType.RANDOM:
        return keras.random.randint(
            (ops.shape(logits)[0],), 0, logits.shape[-1], dtype="int32",
            seed=int(adv_target_config.random_seed))
    if method == configs.AdvTargetType.GROUND_TRUTH:
        return ops.convert_to_tensor(labels)
    raise ValueError(f"Unknown target method: {method!r}")
