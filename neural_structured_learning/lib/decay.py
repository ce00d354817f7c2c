"""Decay of a value over training steps (`DecayConfig`)."""

from keras import ops

from neural_structured_learning.configs import configs


def decay_over_time(global_step, decay_config, init_value=1.0):
    """Returns `max(decay(init_value, global_step), min_value)`.

    With `s = global_step`, `T = decay_steps`, `r = decay_rate`:

    * exponential: `init_value * r^(s / T)`
    * inverse time: `init_value / (1 + r * s / T)`
    * natural exp: `init_value * exp(-r * s / T)`

    Works eagerly as well as traced (1.4 failed outside `tf.function`).

    Args:
        global_step: the current step (a number or scalar tensor).
        decay_config: a `DecayConfig`.
        init_value: the value at step 0.

    Returns:
        A float32 scalar tensor.
    """
    step = ops.cast(global_step, "float32")
    ratio = step / float(decay_config.decay_steps)
    rate = float(decay_config.decay_rate)
    init = ops.cast(init_value, "float32")
    decay_type = decay_config.decay_type
    if decay_type == configs.DecayType.EXPONENTIAL_DECAY:
        value = init * ops.power(rate, ratio)
    elif decay_type == configs.DecayType.INVERSE_TIME_DECAY:
        value = init / (1.0 + rate * ratio)
    elif decay_type == configs.DecayType.NATURAL_EXP_DECAY:
        value = init * ops.exp(-rate * ratio)
    else:
        raise ValueError(f"Invalid configs.DecayType {decay_type!r}")
    return ops.maximum(value, float(decay_config.min_value))
