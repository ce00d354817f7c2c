"""The distance between samples and their neighbours, as a Keras layer."""

import attr
import keras
from keras import ops

from neural_structured_learning.configs import configs
from neural_structured_learning.lib import distances

_PACKAGE = "neural_structured_learning"


def _distance_config(distance_config):
    if distance_config is None:
        return configs.DistanceConfig()
    if isinstance(distance_config, dict):
        return configs.DistanceConfig.from_config(distance_config)
    if not isinstance(distance_config, configs.DistanceConfig):
        raise TypeError(
            "`distance_config` must be an nsl.configs.DistanceConfig. "
            f"Received: {type(distance_config).__name__}")
    return attr.evolve(distance_config)


def replicate_sources(sources, targets):
    """Repeats `sources` to line up with `targets`.

    * `targets` of rank `rank(sources) + 1` (`[..., N, D]` against
      `[..., D]`): each source is broadcast along the new axis -2.
    * Same rank, `targets` `[B * N, ...]` against `sources` `[B, ...]`: row
      `i` of `sources` is repeated `N` times (sample-major, as
      `unpack_neighbor_features` merges neighbours).

    Raises:
        ValueError: if the target batch is not a multiple of the source
            batch, or the ranks differ otherwise.
    """
    sources = ops.convert_to_tensor(sources)
    targets = ops.convert_to_tensor(targets)
    s_rank, t_rank = len(sources.shape), len(targets.shape)
    if t_rank == s_rank + 1:
        return ops.broadcast_to(ops.expand_dims(sources, -2),
                                ops.shape(targets))
    if t_rank != s_rank:
        raise ValueError(
            f"`targets` must have the rank of `sources` ([B * N, ...]) or one "
            f"more ([..., N, D]). Received shapes {tuple(sources.shape)} and "
            f"{tuple(targets.shape)}.")
    s_batch, t_batch = sources.shape[0], targets.shape[0]
    if s_batch is not None and t_batch is not None:
        if s_batch == 0 or t_batch % s_batch:
            raise ValueError(
                f"The batch size of `targets` ({t_batch}) must be a multiple "
                f"of that of `sources` ({s_batch}): targets hold N neighbours "
                f"per source. Received shapes {tuple(sources.shape)} and "
                f"{tuple(targets.shape)}.")
        times = t_batch // s_batch
        return sources if times == 1 else ops.repeat(sources, times, axis=0)
    times = ops.shape(targets)[0] // ops.shape(sources)[0]
    return ops.repeat(sources, times, axis=0)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PairwiseDistance(keras.layers.Layer):
    """Weighted distance between sources and their targets (neighbours).

    With `s` the sources replicated to the targets' shape (see below), `t`
    the targets and `w` the weights:

        loss = reduce(w * d(s, t))

    where `d` and `reduce` come from `distance_config`
    (`nsl.lib.pairwise_distance_wrapper`). E.g. the default (L2, sum by
    non-zero weights, no axis) is `sum(w * (s - t)^2) / count_nonzero(w)`
    over every element; with `sum_over_axis=-1` it becomes the mean over
    rows of the weighted squared Euclidean distance.

    Sources `[B, D]` are matched to targets `[B * N, D]` (each row repeated
    `N` times, sample-major) or `[B, N, D]` (broadcast along axis 1).

    Args:
        distance_config: a `DistanceConfig` (default `DistanceConfig()`);
            copied.
        **kwargs: `keras.layers.Layer` arguments; the default name is
            'pairwise_distance'.

    Call arguments (as NSL 1.4):
        sources: a tensor `[B, ...]`; or a `(sources, targets)` or
            `(sources, targets, weights)` tuple when `targets` is None.
        targets: a tensor `[B * N, ...]` or `[B, N, ...]`.
        weights: a scalar or a tensor broadcastable to the distances, e.g.
            `[B * N, 1]` (default 1.0).

    Returns:
        A scalar (or the weighted distances for `Reduction.NONE`).

    Raises:
        ValueError: `No targets provided.` when there are no targets; shape
            mismatches (`Shapes ... are incompatible`).

    Example:
    >>> layer = nsl.keras.layers.PairwiseDistance(
    ...     nsl.configs.DistanceConfig('l2'))
    >>> sources = np.array([[1., 1, 1, 1]], 'float32')      # [B=1, D=4]
    >>> targets = np.array([[[4., 3, 2, 1]]], 'float32')    # [B=1, N=1, D=4]
    >>> float(layer(sources, targets))  # Mean of (9, 4, 1, 0).
    3.5
    """

    def __init__(self, distance_config=None, **kwargs):
        kwargs.setdefault("name", "pairwise_distance")
        super().__init__(**kwargs)
        self.distance_config = _distance_config(distance_config)
        self.built = True  # No state.

    def __call__(self, sources, targets=None, weights=1.0, **kwargs):
        if targets is None:
            if isinstance(sources, (list, tuple)) and len(sources) == 3:
                sources, targets, weights = sources
            elif isinstance(sources, (list, tuple)) and len(sources) == 2:
                sources, targets = sources
            else:
                raise ValueError(
                    "No targets provided. Call the layer as layer(sources, "
                    "targets, weights) or layer((sources, targets[, "
                    "weights])).")
        return super().__call__(sources, targets, weights=weights, **kwargs)

    def call(self, sources, targets, weights=1.0):
        sources = replicate_sources(sources, targets)
        return distances.pairwise_distance_wrapper(
            sources, targets, weights, distance_config=self.distance_config)

    def get_config(self):
        config = super().get_config()
        config.update(distance_config=self.distance_config.get_config())
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["distance_config"] = configs.DistanceConfig.from_config(
            config["distance_config"])
        return cls(**config)
