"""Adversarial neighbours: FGSM and PGD perturbations along the loss gradient.

References:
    Goodfellow et al., 2015, "Explaining and harnessing adversarial examples"
    (FGSM): https://arxiv.org/abs/1412.6572
    Madry et al., 2018, "Towards deep learning models resistant to adversarial
    attacks" (PGD): https://arxiv.org/abs/1706.06083
"""

import warnings

import keras
from keras import ops
from keras import tree

from neural_structured_learning.lib import _tensors
from neural_structured_learning.lib import abstract_gen_neighbor
from neural_structured_learning.lib import gradients
from neural_structured_learning.lib import masks
from neural_structured_learning.lib import norms
from neural_structured_learning.lib import sampling


def is_differentiable_tensor(t):
    """True iff `t` is a backend tensor with a floating-point dtype."""
    return (ops.is_tensor(t) and not getattr(t, "is_sparse", False)
            and _tensors.is_float(t))


# ---------------------------------------------------------------------------
# Keyed views of features and of their constraints.


def keyed_view(structure):
    """Returns `(dict key -> value, rebuild)` for a tensor, list or dict."""
    if isinstance(structure, dict):
        return dict(structure), lambda d: {k: d[k] for k in structure}
    if isinstance(structure, (list, tuple)):
        n, kind = len(structure), type(structure)
        return dict(enumerate(structure)), lambda d: kind(
            d[i] for i in range(n))
    return {"": structure}, lambda d: d[""]


def keyed_constraint(value, keyed, name, input_kind):
    """Maps a mask or clip bound to the feature keys it applies to.

    A scalar or array applies to every feature (for dict and list inputs too:
    1.4 silently ignored it there). A dict applies by feature name, a list by
    position (for list inputs); `None` entries mean "no constraint".
    """
    if value is None:
        return {}
    if isinstance(value, dict):
        if input_kind != "dict":
            raise ValueError(
                f"`{name}` is a dict, but the features are a {input_kind}: "
                f"give `{name}` as a scalar or a {input_kind}. Received: "
                f"{name} keys {sorted(map(str, value))}.")
        unknown = sorted(set(value) - set(keyed))
        if unknown:
            raise ValueError(
                f"`{name}` has keys {unknown} that are not features. "
                f"Features: {sorted(map(str, keyed))}.")
        return {k: v for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)) and input_kind == "list":
        if len(value) != len(keyed):
            raise ValueError(
                f"`{name}` has {len(value)} entries but there are "
                f"{len(keyed)} features: give one entry (or None) per "
                "feature.")
        return {i: v for i, v in enumerate(value) if v is not None}
    if isinstance(value, (list, tuple)) and input_kind == "dict":
        raise ValueError(
            f"`{name}` is a list, but the features are a dict: give `{name}` "
            "as a scalar or a dict keyed by feature name.")
    return {k: value for k in keyed}


def _input_kind(structure):
    if isinstance(structure, dict):
        return "dict"
    if isinstance(structure, (list, tuple)):
        return "list"
    return "tensor"


class Constraints:
    """Feature masks and clip bounds of an `AdvNeighborConfig`, by key."""

    def __init__(self, config, features):
        keyed, _ = keyed_view(features)
        kind = _input_kind(features)
        self.mask = keyed_constraint(config.feature_mask, keyed,
                                      "feature_mask", kind)
        self.clip_min = keyed_constraint(config.clip_value_min, keyed,
                                          "clip_value_min", kind)
        self.clip_max = keyed_constraint(config.clip_value_max, keyed,
                                          "clip_value_max", kind)
        # Explicitly naming a feature that cannot be perturbed is an error.
        if kind != "tensor":
            for name, table, given in (
                    ("feature_mask", self.mask, config.feature_mask),
                    ("clip_value_min", self.clip_min, config.clip_value_min),
                    ("clip_value_max", self.clip_max, config.clip_value_max)):
                if not isinstance(given, (dict, list, tuple)):
                    continue
                for key in table:
                    if not _perturbable(keyed[key]):
                        raise ValueError(
                            f"`{name}` names feature {key!r}, which cannot "
                            f"be perturbed: its dtype is {_dtype(keyed[key])}"
                            ". Only floating-point features are perturbed; "
                            "cast it to float in the input pipeline, or "
                            f"remove it from `{name}`.")


def _dtype(x):
    dtype = getattr(x, "dtype", None)
    return keras.backend.standardize_dtype(dtype) if dtype else type(x)


def _perturbable(x):
    if x is None or getattr(x, "is_sparse", False) or isinstance(x, str):
        return False
    try:
        return _tensors.is_float(ops.convert_to_tensor(x))
    except Exception:  # pylint: disable=broad-except
        return False


def split_perturbable(features):
    """Returns `(keys, tensors, others)` of the floating-point features.

    Floating-point NumPy arrays are converted to tensors and perturbed too
    (1.4 left them alone).
    """
    keyed, _ = keyed_view(features)
    keys, tensors, others = [], [], []
    for key, value in keyed.items():
        if _perturbable(value):
            keys.append(key)
            tensors.append(ops.convert_to_tensor(value))
        else:
            others.append(key)
    return keys, tensors, others


# ---------------------------------------------------------------------------
# The perturbation itself.


NONFINITE_GRADIENT_MESSAGE = (
    "The input gradient has NaN or Inf entries "
    "(AdvNeighborConfig.nonfinite_gradient='raise').")


def _finite(grads, policy):
    if policy == "raise":
        return gradients.assert_finite(grads, NONFINITE_GRADIENT_MESSAGE)
    return [ops.where(ops.isfinite(g), g, ops.zeros_like(g)) for g in grads]


def perturb(x0, keys, grad_fn, config, constraints, first_grads=None,
            seed=None):
    """Runs FGSM/PGD from the original point `x0`.

    Each step, with `g` the masked input gradient of the loss at the current
    point `x`:

        delta = adv_step_size * argmax_{||d|| = 1} <g, d> + (x - x0)
        delta = project_to_ball(delta, pgd_epsilon)       (if pgd_epsilon)
        x = clip(x0 + delta, clip_value_min, clip_value_max)

    The norm, the maximisation and the projection are joint over all
    perturbed features of an example. The first step uses `first_grads`
    when given; with `random_init` the walk starts from a random point in
    the ball instead and takes `pgd_iterations` gradient steps. As in 1.4,
    `pgd_iterations=0` without `random_init` still takes one step.

    Args:
        x0: list of float tensors (the perturbed features, in `keys` order).
        keys: their keys (for masks and clip bounds).
        grad_fn: function of a list of tensors (a point) returning the
            gradients of the loss there.
        config: an `AdvNeighborConfig`.
        constraints: a `Constraints`.
        first_grads: optional gradients at `x0`.
        seed: seed for `random_init`.

    Mixed precision: float16/bfloat16 features are walked in float32 and
    the result is rounded back to their dtype; gradients in another float
    dtype (a model's compute dtype) are cast to the walk's dtype.

    Returns:
        A list of perturbed tensors (constants: gradient stopped), each in
        the dtype of its feature.
    """
    norm = config.adv_grad_norm
    # float32 and float64 features keep their dtype; the walk would lose
    # the step (or accumulate rounding over PGD steps) in half precision.
    out_dtypes = [_dtype(x) for x in x0]
    x0 = [ops.cast(x, _tensors.working_dtype(d))
          for x, d in zip(x0, out_dtypes)]

    def direction(grads):
        grads = [ops.cast(g, x.dtype) for g, x in zip(grads, x0)]
        grads = _finite(grads, config.nonfinite_gradient)
        grads = [masks.apply_feature_mask(g, constraints.mask.get(k))
                 for k, g in zip(keys, grads)]
        return norms.maximize_within_unit_norm(grads, norm)

    def apply(delta):
        out = []
        for k, x, d in zip(keys, x0, delta):
            x = x + ops.stop_gradient(d)
            if k in constraints.clip_min:
                x = ops.maximum(x, ops.cast(constraints.clip_min[k], x.dtype))
            if k in constraints.clip_max:
                x = ops.minimum(x, ops.cast(constraints.clip_max[k], x.dtype))
            out.append(ops.stop_gradient(x))
        return out

    def step(current, grads):
        delta = [config.adv_step_size * d + (c - x)
                 for d, c, x in zip(direction(grads), current, x0)]
        if config.pgd_epsilon is not None:
            delta = norms.project_to_ball(delta, config.pgd_epsilon, norm)
        return apply(delta)

    if config.random_init:
        radius = config.pgd_epsilon or config.adv_step_size
        current = apply(sampling.random_in_norm_ball(x0, radius, norm, seed))
        start = 0
    else:
        grads = first_grads if first_grads is not None else grad_fn(x0)
        current = step(x0, grads)
        start = 1
    for _ in range(start, config.pgd_iterations):
        current = step(current, grad_fn(current))
    return [ops.cast(c, d) for c, d in zip(current, out_dtypes)]



def _warn_not_perturbed(others, raise_invalid_gradient):
    if not others:
        return
    message = (f"Cannot perturb features {sorted(map(str, others))}: only "
               "floating-point tensors are perturbed.")
    if raise_invalid_gradient:
        raise ValueError(message)
    warnings.warn(message + " They are left unchanged.", stacklevel=3)


def gen_adv_neighbor(input_features, labeled_loss, config,
                     raise_invalid_gradient=False, gradient_tape=None,
                     pgd_model_fn=None, pgd_loss_fn=None, pgd_labels=None,
                     regularizer_fn=None, use_while_loop=False, *,
                     seed=None):
    """Generates adversarial neighbours of `input_features` (FGSM or PGD).

    See `perturb` for the update rule. Two forms:

    * Backend-neutral (TensorFlow, JAX, PyTorch): pass `labeled_loss` as a
      function of the features returning a scalar loss, or pass
      `labeled_loss=None` with `pgd_model_fn` and `pgd_loss_fn`.
    * NSL 1.4's form: pass `labeled_loss` as a computed scalar. TensorFlow
      then needs the `gradient_tape` that recorded it (or graph mode);
      PyTorch needs the features to have `requires_grad`; JAX cannot
      differentiate a computed value and raises.

    For PGD (`pgd_iterations > 1`) or `random_init`, the loss at later points
    is `pgd_loss_fn(pgd_labels, pgd_model_fn(features))` (plus
    `regularizer_fn(perturbations, gradients_at_input)` when given), or the
    `labeled_loss` function.

    Args:
        input_features: a float tensor, or a list or dict of tensors. Only
            floating-point tensors (and float NumPy arrays) are perturbed;
            the others pass through unchanged.
        labeled_loss: a scalar loss computed from `input_features`, a
            function of the features returning it, or None.
        config: an `AdvNeighborConfig`.
        raise_invalid_gradient: raise instead of warning when some features
            cannot be perturbed.
        gradient_tape: TensorFlow only: the tape that computed
            `labeled_loss`.
        pgd_model_fn: function of the features returning predictions.
        pgd_loss_fn: function `(labels, predictions) -> scalar loss`.
        pgd_labels: labels passed to `pgd_loss_fn`.
        regularizer_fn: optional `(perturbations, gradients) -> scalar`
            added to the PGD loss (keyed like the perturbed features).
        use_while_loop: accepted for compatibility; steps are unrolled.
        seed: int or `keras.random.SeedGenerator` for `random_init`.

    Returns:
        `(adv_neighbor, adv_weight)`: the neighbour, with the structure of
        `input_features`, and float32 ones of shape `[batch, 1]`.

    Raises:
        ValueError: if no loss function is given for PGD/random_init, if a
            mask or clip bound does not match the features or names a
            non-float feature, or if `raise_invalid_gradient` and some
            features cannot be perturbed.
    """
    del use_while_loop
    keyed, rebuild = keyed_view(input_features)
    constraints = Constraints(config, input_features)
    keys, x0, others = split_perturbable(input_features)
    _warn_not_perturbed(others, raise_invalid_gradient)

    def features_at(xs):
        return rebuild({**keyed, **dict(zip(keys, xs))})

    loss_fn = None
    if pgd_model_fn is not None and pgd_loss_fn is not None:
        def loss_fn(features):
            return pgd_loss_fn(pgd_labels, pgd_model_fn(features))
    elif callable(labeled_loss):
        loss_fn = labeled_loss
    needs_loss_fn = config.pgd_iterations > 1 or config.random_init
    if needs_loss_fn and loss_fn is None:
        raise ValueError(
            "Both pgd_model_fn and pgd_loss_fn have to be specified when "
            "pgd_iterations > 1 or random_init is set (or pass "
            "`labeled_loss` as a function of the features).")

    def grad_fn(xs):
        return gradients.value_and_input_gradients(
            lambda ys: loss_fn(features_at(ys)), xs)[1]

    if not x0:
        batch = ops.shape(tree.flatten(input_features)[0])[0]
        return input_features, ops.ones((batch, 1), "float32")

    first_grads = None
    if not config.random_init:
        if callable(labeled_loss):
            first_grads = gradients.value_and_input_gradients(
                lambda ys: labeled_loss(features_at(ys)), x0)[1]
        elif labeled_loss is not None:
            first_grads = gradients.gradients_of(
                labeled_loss, [keyed[k] for k in keys], gradient_tape)
        else:
            first_grads = grad_fn(x0)

    step_grad_fn = grad_fn
    if regularizer_fn is not None and loss_fn is not None:
        grads_at_input = dict(zip(keys, grad_fn(x0)))

        def step_grad_fn(xs):
            def loss_with_regularizer(ys):
                perts = {k: y - x for k, y, x in zip(keys, ys, x0)}
                loss = loss_fn(features_at(ys))
                return loss + ops.cast(regularizer_fn(perts, grads_at_input),
                                       loss.dtype)
            return gradients.value_and_input_gradients(
                loss_with_regularizer, xs)[1]

    adv = perturb(x0, keys, step_grad_fn, config, constraints,
                  first_grads=first_grads, seed=seed)
    batch = ops.shape(x0[0])[0]
    return features_at(adv), ops.ones((batch, 1), "float32")


class _GenAdvNeighbor(abstract_gen_neighbor.GenNeighbor):
    """Object form of `gen_adv_neighbor`, as in 1.4."""

    def __init__(self, input_features, labeled_loss, config, **kwargs):
        self._args = (input_features, labeled_loss, config)
        self._kwargs = kwargs

    def gen_neighbor(self):
        return gen_adv_neighbor(*self._args, **self._kwargs)

