"""Configuration classes, enums and factories for Neural Structured Learning.

Everything here is plain Python data (attrs classes and string enums): no
deep-learning framework is imported, so configs can be built, compared, saved
as JSON and loaded anywhere.

Compatibility with NSL 1.4: same class names, field names, field order,
defaults and factory functions. Differences, each deliberate:

* Default sub-configs are fresh objects per instance (1.4 shared one instance
  between all configs, so mutating one mutated the default for everyone).
* Enum fields accept the enum or its string value everywhere (1.4 accepted
  strings only for some fields).
* `Reduction` is a plain string constant class; its values are those of
  `tf.compat.v1.losses.Reduction`, so 1.4 code passing either still works.
* Invalid values fail at construction with a message naming the field:
  negative multipliers or step sizes, `pgd_iterations > 1` without
  `pgd_epsilon` (1.4 silently took unprojected steps), a non-positive
  `approx_difference`, unknown norm or distance names; non-numbers (e.g.
  strings) and NaN in numeric fields, an infinite `adv_step_size` or
  `multiplier`, `feature_mask` or clip bounds that are not numbers, arrays
  or a dict/list of them (or mask values outside [0, 1]),
  `clip_value_min > clip_value_max` (as scalars, or for a dict/list key
  where both are given), a `sum_over_axis` that is not None or an int.
* `IntegrationConfig.activation_fn` defaults to the string `'tanh'` (1.4 used
  `tf.nn.tanh`; the field is unused in both).
* Every config has `get_config()` / `from_config()` for JSON serialisation,
  which the Keras wrappers use to save themselves in `.keras` files.
"""

import enum
import numbers

import attr
import numpy as np

from neural_structured_learning._core import naming
from neural_structured_learning._core import validation


class _StrEnum(str, enum.Enum):
    """A string-valued enum that also compares equal to its value."""

    @classmethod
    def all(cls):
        return list(cls)

    def __str__(self):
        return self.value


def _enum_converter(enum_cls, field_name):
    def convert(value):
        if isinstance(value, enum_cls):
            return value
        if isinstance(value, enum.Enum):  # e.g. a 1.4 enum member.
            value = value.value
        try:
            return enum_cls(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in enum_cls)
            raise ValueError(
                f"`{field_name}` must be one of {allowed}. Received: "
                f"{field_name}={value!r}") from None
    return convert


class NormType(_StrEnum):
    """Types of norms: L1, L2 and L-infinity."""
    L1 = "l1"
    L2 = "l2"
    INFINITY = "infinity"


class AdvTargetType(_StrEnum):
    """Types of adversarial targeting."""
    SECOND = "second"
    LEAST = "least"
    RANDOM = "random"
    GROUND_TRUTH = "ground_truth"


class TransformType(_StrEnum):
    """Types of logit transforms applied before a distance."""
    SOFTMAX = "softmax"
    NONE = "none"


class DistanceType(_StrEnum):
    """Types of distance between a sample and its neighbours."""
    L1 = "l1"
    L2 = "l2"
    COSINE = "cosine"
    JENSEN_SHANNON_DIVERGENCE = "jensen_shannon_divergence"
    KL_DIVERGENCE = "kl_divergence"


class DecayType(_StrEnum):
    """Types of decay over time."""
    EXPONENTIAL_DECAY = "exponential_decay"
    INVERSE_TIME_DECAY = "inverse_time_decay"
    NATURAL_EXP_DECAY = "natural_exp_decay"


class IntegrationType(_StrEnum):
    """Types of integration of multimodal features (unused; kept from 1.4)."""
    ADD = "additive"
    MUL = "multiplicative"
    TUCKER_DECOMP = "tucker_decomp"


class Reduction:
    """Loss reductions, with the string values of TF1's `losses.Reduction`.

    * `NONE`: the weighted losses, unreduced.
    * `SUM`: `sum(L * W)`.
    * `MEAN`: `sum(L * W) / sum(W)` (0 when `sum(W) == 0`).
    * `SUM_OVER_BATCH_SIZE`: `sum(L * W) / size(L)`.
    * `SUM_BY_NONZERO_WEIGHTS` (alias `SUM_OVER_NONZERO_WEIGHTS`):
      `sum(L * W) / count_nonzero(W)` (0 when no weight is non-zero).
    """
    NONE = "none"
    SUM = "weighted_sum"
    MEAN = "weighted_mean"
    SUM_OVER_BATCH_SIZE = "weighted_sum_over_batch_size"
    SUM_BY_NONZERO_WEIGHTS = "weighted_sum_by_nonzero_weights"
    SUM_OVER_NONZERO_WEIGHTS = SUM_BY_NONZERO_WEIGHTS

    @classmethod
    def all(cls):
        return (cls.NONE, cls.SUM, cls.MEAN, cls.SUM_OVER_BATCH_SIZE,
                cls.SUM_BY_NONZERO_WEIGHTS)

    @classmethod
    def validate(cls, key):
        value = getattr(key, "value", key)
        if value not in cls.all():
            raise ValueError(
                f"`reduction` must be one of {list(cls.all())}. Received: "
                f"reduction={key!r}")
        return value


def _validate_reduction(value):
    return Reduction.validate(value)


# ---------------------------------------------------------------------------
# Validators shared by the config classes.


def _known_values(value):
    """`value` as a NumPy array when it is a number or a concrete array or
    tensor; None when its values are unknown (a symbolic tensor); raises
    TypeError for anything else (strings, objects)."""
    if isinstance(value, (str, bytes)):
        raise TypeError
    if isinstance(value, numbers.Number):
        if isinstance(value, numbers.Complex) and not isinstance(
                value, numbers.Real):
            raise TypeError
        return np.asarray(value)
    if isinstance(value, (list, tuple)) or (
            hasattr(value, "shape") and hasattr(value, "dtype")):
        try:
            array = np.asarray(value)
        except Exception:  # pylint: disable=broad-except
            if isinstance(value, (list, tuple)):
                raise TypeError from None
            return None  # E.g. a symbolic tensor: checked when used.
        if array.dtype.kind not in "biuf":
            raise TypeError
        return array
    raise TypeError


def _number(name, value, *, minimum=None, strict=False, finite=False,
            allow_none=False):
    """Checks a real number (or a tensor of them) and returns it.

    Raises ValueError naming the field when `value` is not a number, is
    NaN, is infinite (`finite`), or is below `minimum` (or equal to it with
    `strict`).
    """
    if value is None and allow_none:
        return value
    bound = ""
    if minimum is not None:
        bound = f" {'>' if strict else '>='} {minimum}"
    what = f"a {'finite ' if finite else ''}number{bound}"
    if allow_none:
        what += " (or None)"
    try:
        values = _known_values(value)
    except TypeError:
        values = None
        ok = False
    else:
        ok = True
        if values is not None and values.dtype.kind == "f":
            ok = not np.isnan(values).any() and (
                not finite or np.isfinite(values).all())
    if not ok:
        raise ValueError(
            f"`{name}` must be {what}. Received: {name}={value!r}")
    if values is not None and minimum is not None and not (
            np.all(values > minimum) if strict else np.all(values >= minimum)):
        none = " (or None)" if allow_none else ""
        raise ValueError(
            f"`{name}` must be{bound}{none}. Received: {name}={value!r}")
    return value


def _non_negative_finite(instance, attribute, value):
    del instance
    _number(attribute.name, value, minimum=0, finite=True)


def _positive_or_none(instance, attribute, value):
    del instance
    _number(attribute.name, value, minimum=0, strict=True, allow_none=True)


def _non_negative_int(instance, attribute, value):
    del instance
    validation.check_int(attribute.name, value, 0)


def _int_or_none(instance, attribute, value):
    del instance
    if value is not None and (isinstance(value, bool) or
                              not isinstance(value, numbers.Integral)):
        raise ValueError(
            f"`{attribute.name}` must be None or an int (an axis). "
            f"Received: {attribute.name}={value!r}")


def _per_feature(name, value, check):
    """Calls `check(label, leaf)` on `value`, or on each entry of a
    dict/list of per-feature values (`None` entries mean "none")."""
    if value is None:
        return
    if isinstance(value, dict):
        for key, entry in value.items():
            if entry is not None:
                check(f"{name}[{key!r}]", entry)
        return
    if isinstance(value, (list, tuple)) and any(
            v is None or isinstance(v, (list, tuple)) or hasattr(v, "shape")
            for v in value):
        # A per-feature list (entries may be None or arrays of any shape).
        for i, entry in enumerate(value):
            if entry is not None:
                check(f"{name}[{i}]", entry)
        return
    check(name, value)


def _constraint_values(name, value, *, kind, unit_interval=False):
    """Checks one mask or clip bound; returns its known values or None."""
    try:
        values = _known_values(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be None, a number or an array/tensor of numbers, "
            f"or a dict (by feature name) or list (by position) of them "
            f"({kind}). Received: {name}={value!r}") from None
    if values is None:
        return None
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise ValueError(f"`{name}` must not be NaN. Received: {name}="
                         f"{value!r}")
    if unit_interval and ((values < 0).any() or (values > 1).any()):
        raise ValueError(
            f"`{name}` values must be in [0, 1] (0 means \"do not perturb\")"
            f". Received: {name}={value!r}")
    return values


def _feature_mask(instance, attribute, value):
    del instance
    _per_feature(attribute.name, value, lambda n, v: _constraint_values(
        n, v, kind="masks in [0, 1]", unit_interval=True))


def _clip_value(instance, attribute, value):
    del instance
    _per_feature(attribute.name, value, lambda n, v: _constraint_values(
        n, v, kind="bounds of the perturbed features"))


def _entries(value):
    """`{key: entry}` of a per-feature dict/list, or `{None: value}`."""
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)) and any(
            v is None or isinstance(v, (list, tuple)) or hasattr(v, "shape")
            for v in value):
        return {i: v for i, v in enumerate(value) if v is not None}
    return {None: value}


def _check_clip_order(clip_min, clip_max):
    """Raises when a lower clip bound exceeds the upper one it meets."""
    if clip_min is None or clip_max is None:
        return
    mins, maxs = _entries(clip_min), _entries(clip_max)
    if None in mins:  # A scalar/array bound applies to every feature.
        mins = {k: mins[None] for k in maxs}
    if None in maxs:
        maxs = {k: maxs[None] for k in mins}
    for key in [k for k in mins if k in maxs]:
        low, high = _known_values(mins[key]), _known_values(maxs[key])
        if low is None or high is None:
            continue
        try:
            bad = bool(np.any(low > high))
        except ValueError:  # Shapes that do not broadcast: checked in use.
            continue
        if bad:
            where = "" if key is None else f" for feature {key!r}"
            raise ValueError(
                f"`clip_value_min` must be <= `clip_value_max`{where}. "
                f"Received: clip_value_min={mins[key]!r}, "
                f"clip_value_max={maxs[key]!r}")


# ---------------------------------------------------------------------------
# Serialisation helpers.


def _to_json(value):
    """Converts a config field value to JSON-friendly Python data."""
    if isinstance(value, _ConfigMixin):
        return value.get_config()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # any tensor.
        return np.asarray(value).tolist()
    return value


class _ConfigMixin:
    """`get_config()` / `from_config()` for attrs config classes."""

    # Fields holding nested configs, mapped to their class.
    _NESTED = {}

    def get_config(self):
        """Returns the config as a JSON-serialisable dict."""
        return {f.name: _to_json(getattr(self, f.name))
                for f in attr.fields(type(self))}

    @classmethod
    def from_config(cls, config):
        """Builds the config from the output of `get_config()`."""
        kwargs = dict(config)
        for name, nested_cls in cls._NESTED.items():
            if isinstance(kwargs.get(name), dict):
                kwargs[name] = nested_cls.from_config(kwargs[name])
        return cls(**kwargs)


# ---------------------------------------------------------------------------
# Adversarial regularization.


@attr.s
class AdvNeighborConfig(_ConfigMixin):
    """How adversarial neighbours are generated (FGSM or PGD).

    Attributes:
        feature_mask: optional multiplier in [0, 1] applied to the gradient
            before it is normalised; 0 means "do not perturb". A scalar or
            tensor applies to every feature; a dict (keyed by feature name) or
            a list (by position) gives one mask per feature, `None` entries
            meaning no mask.
        adv_step_size: size of each perturbation step (epsilon of FGSM).
        adv_grad_norm: norm used to normalise the gradient: 'l2', 'l1' or
            'infinity' (a `NormType`).
        clip_value_min: optional lower bound of the perturbed features; scalar
            (applies to every feature, also for dict inputs, unlike 1.4), or a
            dict/list matching the features.
        clip_value_max: optional upper bound, same forms as `clip_value_min`.
        pgd_iterations: number of gradient steps (1 = FGSM).
        pgd_epsilon: radius of the ball (in `adv_grad_norm`, around the
            original input) the perturbation is projected onto after each
            step. Required when `pgd_iterations > 1`.
        random_init: start from a random point in the ball instead of the
            input (radius `pgd_epsilon`, or `adv_step_size` when None).
        nonfinite_gradient: what to do with NaN/Inf entries of the input
            gradient: 'zero' replaces them with 0 (1.4's behaviour), 'raise'
            raises an error. New in this version.
    """
    feature_mask = attr.ib(default=None, validator=_feature_mask)
    adv_step_size = attr.ib(default=0.001, validator=_non_negative_finite)
    adv_grad_norm = attr.ib(
        default=NormType.L2,
        converter=_enum_converter(NormType, "adv_grad_norm"))
    clip_value_min = attr.ib(default=None, validator=_clip_value)
    clip_value_max = attr.ib(default=None, validator=_clip_value)
    pgd_iterations = attr.ib(default=1, validator=_non_negative_int)
    pgd_epsilon = attr.ib(default=None, validator=_positive_or_none)
    random_init = attr.ib(default=False, converter=bool)
    nonfinite_gradient = attr.ib(default="zero")

    def __attrs_post_init__(self):
        _check_clip_order(self.clip_value_min, self.clip_value_max)
        if self.pgd_iterations > 1 and self.pgd_epsilon is None:
            raise ValueError(
                "`pgd_epsilon` must be set when `pgd_iterations > 1`: PGD "
                "projects each step onto the ball of radius `pgd_epsilon` "
                "around the input. Received: pgd_iterations="
                f"{self.pgd_iterations}, pgd_epsilon=None. (NSL 1.4 took "
                "unprojected steps here; set pgd_epsilon="
                "pgd_iterations * adv_step_size to reproduce that.)")
        if self.nonfinite_gradient not in ("zero", "raise"):
            raise ValueError(
                "`nonfinite_gradient` must be 'zero' or 'raise'. Received: "
                f"nonfinite_gradient={self.nonfinite_gradient!r}")


@attr.s
class AdvRegConfig(_ConfigMixin):
    """Adversarial regularization: `loss + multiplier * adversarial_loss`.

    Attributes:
        multiplier: weight of the adversarial loss (>= 0).
        adv_neighbor_config: an `AdvNeighborConfig`.
    """
    _NESTED = {"adv_neighbor_config": AdvNeighborConfig}
    multiplier = attr.ib(default=0.2, validator=_non_negative_finite)
    adv_neighbor_config = attr.ib(factory=AdvNeighborConfig)


@attr.s
class AdvTargetConfig(_ConfigMixin):
    """Which class a targeted adversarial attack aims at.

    Attributes:
        target_method: an `AdvTargetType`.
        random_seed: seed used when `target_method` is RANDOM.
    """
    target_method = attr.ib(
        default=AdvTargetType.GROUND_TRUTH,
        converter=_enum_converter(AdvTargetType, "target_method"))
    random_seed = attr.ib(default=0.0)


# ---------------------------------------------------------------------------
# Distances and decay.


@attr.s
class DistanceConfig(_ConfigMixin):
    """Distance between a sample's output and its neighbours' outputs.

    Attributes:
        distance_type: a `DistanceType` ('l1', 'l2' (squared difference),
            'cosine', 'jensen_shannon_divergence', 'kl_divergence').
        reduction: a `Reduction` value.
        sum_over_axis: axis summed over before reducing (required for cosine,
            KL and JSD; `None` averages L1/L2 over every element).
        transform_fn: 'none' or 'softmax', applied to both sides first.
    """
    distance_type = attr.ib(
        default=DistanceType.L2,
        converter=_enum_converter(DistanceType, "distance_type"))
    reduction = attr.ib(default=Reduction.SUM_BY_NONZERO_WEIGHTS,
                        converter=_validate_reduction)
    sum_over_axis = attr.ib(default=None, validator=_int_or_none)
    transform_fn = attr.ib(
        default=TransformType.NONE,
        converter=_enum_converter(TransformType, "transform_fn"))


@attr.s
class DecayConfig(_ConfigMixin):
    """Decay of a value over training steps (see `nsl.lib.decay_over_time`).

    Attributes:
        decay_steps: number of steps per decay period (required).
        decay_rate: decay rate.
        min_value: lower bound of the decayed value.
        decay_type: a `DecayType`.
    """
    decay_steps = attr.ib(validator=lambda _, a, v: _number(
        a.name, v, minimum=0, strict=True, finite=True))
    decay_rate = attr.ib(default=0.96, validator=lambda _, a, v: _number(
        a.name, v, finite=True))
    min_value = attr.ib(default=0.0, validator=lambda _, a, v: _number(
        a.name, v, finite=True))
    decay_type = attr.ib(
        default=DecayType.EXPONENTIAL_DECAY,
        converter=_enum_converter(DecayType, "decay_type"))


@attr.s
class IntegrationConfig(_ConfigMixin):
    """Multimodal integration (unused by the library; kept from 1.4)."""
    integration_type = attr.ib(
        converter=_enum_converter(IntegrationType, "integration_type"))
    hidden_dims = attr.ib()
    activation_fn = attr.ib(default="tanh")


# ---------------------------------------------------------------------------
# Virtual adversarial training.


@attr.s
class VirtualAdvConfig(_ConfigMixin):
    """Virtual adversarial training (Miyato et al., 2018).

    Attributes:
        adv_neighbor_config: an `AdvNeighborConfig`; only `feature_mask`,
            `adv_step_size` (the radius epsilon of the perturbation) and
            `adv_grad_norm` are used.
        distance_config: a `DistanceConfig` comparing the predictions on the
            input and on the perturbed input.
        num_approx_steps: power-iteration steps (>= 0).
        approx_difference: finite-difference step xi (> 0).
    """
    _NESTED = {"adv_neighbor_config": AdvNeighborConfig,
               "distance_config": DistanceConfig}
    adv_neighbor_config = attr.ib(factory=AdvNeighborConfig)
    distance_config = attr.ib(factory=DistanceConfig)
    num_approx_steps = attr.ib(default=1, validator=_non_negative_int)
    approx_difference = attr.ib(default=1e-6)

    def __attrs_post_init__(self):
        _number("approx_difference", self.approx_difference, finite=True)
        if not self.approx_difference > 0:
            raise ValueError(
                "`approx_difference` (the finite-difference step xi) must be "
                f"> 0. Received: approx_difference={self.approx_difference!r}")


# ---------------------------------------------------------------------------
# Graphs.


@attr.s
class GraphBuilderConfig(_ConfigMixin):
    """How `nsl.tools.build_graph_from_config` builds a similarity graph.

    Attributes:
        id_feature_name: feature holding each example's id.
        embedding_feature_name: feature holding each example's embedding.
        similarity_threshold: minimum cosine similarity of an edge.
        lsh_splits: random hyperplane splits per LSH round (0 = all pairs).
        lsh_rounds: LSH rounds, used only when `lsh_splits > 0`.
        random_seed: seed of the LSH hyperplanes.
    """
    id_feature_name = attr.ib(default="id")
    embedding_feature_name = attr.ib(default="embedding")
    similarity_threshold = attr.ib(default=0.8)
    lsh_splits = attr.ib(default=0)
    lsh_rounds = attr.ib(default=1)
    random_seed = attr.ib(default=None)


@attr.s
class GraphNeighborConfig(_ConfigMixin):
    """How neighbour features are named and how many are used.

    Attributes:
        prefix: prefix of neighbour feature names (`NL_nbr_`).
        weight_suffix: suffix of neighbour weight names (`_weight`).
        max_neighbors: neighbours used per sample; 0 disables graph
            regularization.
    """
    prefix = attr.ib(default=naming.NBR_PREFIX)
    weight_suffix = attr.ib(default=naming.WEIGHT_SUFFIX)
    max_neighbors = attr.ib(default=0, validator=_non_negative_int)


def _positive_finite(instance, attribute, value):
    del instance
    _number(attribute.name, value, minimum=0, strict=True, finite=True)


@attr.s
class ContrastiveConfig(_ConfigMixin):
    """A contrastive (InfoNCE) graph loss, new in this version.

    For sample `i` of a batch, its neighbours `j` (weights `w_ij`) and the
    other samples `k != i` of the batch as negatives, with `s` the cosine
    similarity of the regularized tensors and `T` the temperature:

        loss_ij = -log(exp(s(h_i, h_ij) / T) /
                       (exp(s(h_i, h_ij) / T) + sum_{k != i} exp(s(h_i, h_k) / T)))
        graph_loss = sum_ij w_ij loss_ij / sum_ij w_ij

    Neighbours are pulled together and other samples pushed apart, which a
    pure pull-together distance cannot do (it is minimised by a constant
    embedding). Graph-MLP (Hu et al., 2021, arXiv:2106.04051) trains an MLP
    with this loss on a hidden layer. See `nsl.lib.neighbor_info_nce`.

    Attributes:
        temperature: `T > 0`.
    """
    temperature = attr.ib(default=0.5, validator=_positive_finite)


def _optional_config(cls):
    """`attr.ib` arguments of an optional nested config field of type `cls`:
    None, a `cls`, or its `get_config()` dict (rebuilt as a `cls`)."""

    def convert(value):
        if isinstance(value, dict):
            return cls.from_config(value)
        return value

    def validate(instance, attribute, value):
        del instance
        if value is not None and not isinstance(value, cls):
            raise TypeError(
                f"`{attribute.name}` must be None or an "
                f"nsl.configs.{cls.__name__}. Received: {value!r}")

    return dict(default=None, converter=convert, validator=validate)


def _unit_interval(instance, attribute, value):
    del instance
    _number(attribute.name, value, minimum=0, finite=True)
    if value > 1:
        raise ValueError(f"`{attribute.name}` must be in [0, 1]. "
                         f"Received: {value!r}")


@attr.s
class PropagationConfig(_ConfigMixin):
    """Propagation through the neighbourhood, distilled (new in this version).

    For sample `i` with prediction `f_i` (the base model's output: logits
    or probabilities), neighbour predictions `f_ij` and weights `w_ij`, the
    neighbourhood prediction is

        z_i = self_weight * f_i + (1 - self_weight) * sum_j w_ij f_ij / sum_j w_ij

    (`nsl.lib.neighborhood_prediction`; with personalized-PageRank
    neighbours, APPNP's propagated output), and the graph loss is

        graph_loss = labeled_loss(y_i, z_i) + mean_i KL(stop_gradient(q_i) || p_i)

    with the compiled loss on labeled rows, `p` the class distribution of
    `f` and `q` that of `z` sharpened by `temperature` (`softmax(z / T)` for
    logits; `nsl.lib.distillation_loss`), over every row, labeled or not.
    The labels train the graph's average (APPNP, Gasteiger et al., 2019),
    and the model alone learns to predict it (GLNN-style distillation,
    Zhang et al., 2022), so the served model needs no graph. Use it with every node as a batch row
    (`NeighborBatchDataset(seeds='all', unlabeled_label=-1)` and the
    wrapper's `unlabeled_label=-1`) and `nsl.tools.ppr_neighbors`.

    Attributes:
        self_weight: the sample's own share of `z_i`, in [0, 1].
        temperature: `T > 0` of the distilled target; `T < 1` sharpens it.
    """
    self_weight = attr.ib(default=0.1, validator=_unit_interval)
    temperature = attr.ib(default=0.5, validator=_positive_finite)


@attr.s
class GraphRegConfig(_ConfigMixin):
    """Graph regularization: `loss + multiplier * graph_loss`.

    Attributes:
        neighbor_config: a `GraphNeighborConfig`.
        multiplier: weight of the graph loss (>= 0).
        distance_config: a `DistanceConfig`.
        contrastive_config: None (NSL 1.4: the graph loss is the
            `distance_config` distance), or a `ContrastiveConfig`: the graph
            loss is InfoNCE with in-batch negatives instead (new in this
            version).
        propagation_config: None, or a `PropagationConfig`: the graph loss
            trains the neighbourhood's averaged prediction on the labels
            and distils it into the model (new in this version; not with
            `contrastive_config`).
    """
    _NESTED = {"neighbor_config": GraphNeighborConfig,
               "distance_config": DistanceConfig,
               "contrastive_config": ContrastiveConfig,
               "propagation_config": PropagationConfig}
    neighbor_config = attr.ib(factory=GraphNeighborConfig)
    multiplier = attr.ib(default=0.01, validator=_non_negative_finite)
    distance_config = attr.ib(factory=DistanceConfig)
    contrastive_config = attr.ib(**_optional_config(ContrastiveConfig))
    propagation_config = attr.ib(**_optional_config(PropagationConfig))

    def __attrs_post_init__(self):
        if (self.contrastive_config is not None
                and self.propagation_config is not None):
            raise ValueError(
                "`contrastive_config` and `propagation_config` are two "
                "different graph losses; set at most one of them.")


# ---------------------------------------------------------------------------
# Factories.


def make_adv_reg_config(
        multiplier=attr.fields(AdvRegConfig).multiplier.default,
        feature_mask=attr.fields(AdvNeighborConfig).feature_mask.default,
        adv_step_size=attr.fields(AdvNeighborConfig).adv_step_size.default,
        adv_grad_norm=attr.fields(AdvNeighborConfig).adv_grad_norm.default,
        clip_value_min=attr.fields(AdvNeighborConfig).clip_value_min.default,
        clip_value_max=attr.fields(AdvNeighborConfig).clip_value_max.default,
        pgd_iterations=attr.fields(AdvNeighborConfig).pgd_iterations.default,
        pgd_epsilon=attr.fields(AdvNeighborConfig).pgd_epsilon.default,
        random_init=attr.fields(AdvNeighborConfig).random_init.default,
        nonfinite_gradient="zero"):
    """Returns an `AdvRegConfig` with a fresh `AdvNeighborConfig`.

    Arguments are the fields of `AdvRegConfig` and `AdvNeighborConfig`, with
    their defaults.
    """
    return AdvRegConfig(
        multiplier=multiplier,
        adv_neighbor_config=AdvNeighborConfig(
            feature_mask=feature_mask,
            adv_step_size=adv_step_size,
            adv_grad_norm=adv_grad_norm,
            clip_value_min=clip_value_min,
            clip_value_max=clip_value_max,
            pgd_iterations=pgd_iterations,
            pgd_epsilon=pgd_epsilon,
            random_init=random_init,
            nonfinite_gradient=nonfinite_gradient))


def make_graph_reg_config(
        neighbor_prefix=attr.fields(GraphNeighborConfig).prefix.default,
        neighbor_weight_suffix=(
            attr.fields(GraphNeighborConfig).weight_suffix.default),
        max_neighbors=attr.fields(GraphNeighborConfig).max_neighbors.default,
        multiplier=attr.fields(GraphRegConfig).multiplier.default,
        distance_type=attr.fields(DistanceConfig).distance_type.default,
        reduction=attr.fields(DistanceConfig).reduction.default,
        sum_over_axis=attr.fields(DistanceConfig).sum_over_axis.default,
        transform_fn=attr.fields(DistanceConfig).transform_fn.default,
        contrastive_temperature=None, propagation_self_weight=None,
        propagation_temperature=(
            attr.fields(PropagationConfig).temperature.default)):
    """Returns a `GraphRegConfig` built from flat arguments.

    `contrastive_temperature` (new in this version): None for NSL 1.4's
    distance loss, or the temperature of a contrastive (InfoNCE) graph loss
    (`ContrastiveConfig`). `propagation_self_weight` (new): None, or the
    `self_weight` of a `PropagationConfig` graph loss, with
    `propagation_temperature` its `temperature`.
    """
    return GraphRegConfig(
        neighbor_config=GraphNeighborConfig(
            prefix=neighbor_prefix,
            weight_suffix=neighbor_weight_suffix,
            max_neighbors=max_neighbors),
        multiplier=multiplier,
        distance_config=DistanceConfig(
            distance_type=distance_type,
            reduction=reduction,
            sum_over_axis=sum_over_axis,
            transform_fn=transform_fn),
        contrastive_config=(
            None if contrastive_temperature is None
            else ContrastiveConfig(temperature=contrastive_temperature)),
        propagation_config=(
            None if propagation_self_weight is None
            else PropagationConfig(self_weight=propagation_self_weight,
                                   temperature=propagation_temperature)))


DEFAULT_DISTANCE_PARAMS = attr.asdict(DistanceConfig())
DEFAULT_ADVERSARIAL_PARAMS = {
    k: v for k, v in attr.asdict(AdvNeighborConfig()).items()
    if k != "nonfinite_gradient"}
