"""Regularizers built from neighbours: adversarial and virtual adversarial.

References:
    Miyato et al., 2018, "Virtual adversarial training: a regularization
    method for supervised and semi-supervised learning":
    https://arxiv.org/abs/1704.03976
"""

import inspect

import keras
from keras import ops
from keras import tree

from neural_structured_learning.lib import _tensors
from neural_structured_learning.lib import distances
from neural_structured_learning.lib import gradients
from neural_structured_learning.lib import masks as feature_masks
from neural_structured_learning.lib import norms


def _accepts(fn, name):
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def adv_regularizer(adv_neighbors, target_scores, model_fn, loss_fn):
    """Returns `loss_fn(target_scores, model_fn(adv_neighbors))`.

    A TF1-era helper kept from 1.4. A `model_fn` taking 1.4's `is_train` and
    `reuse` arguments gets `is_train=False, reuse=True`.

    Args:
        adv_neighbors: the adversarial inputs.
        target_scores: the targets of the loss.
        model_fn: function of the inputs returning predictions.
        loss_fn: function `(targets, predictions) -> scalar`.
    """
    kwargs = {}
    if _accepts(model_fn, "is_train"):
        kwargs["is_train"] = False
    if _accepts(model_fn, "reuse"):
        kwargs["reuse"] = True
    return loss_fn(target_scores, model_fn(adv_neighbors, **kwargs))


def _normalize_jointly(tensors, norm_type):
    """Per-example unit-norm direction, jointly over a list of tensors.

    Scale-invariant: each example is first divided by its largest absolute
    entry (as in Miyato et al.'s code), then by its norm. The gradients of
    the power iteration are tiny (a KL of order `xi^2`, averaged over the
    batch: 1e-7 per example at `xi = 1e-3` on MNIST), far below the `1e-6`
    floor of a plain `x / max(|x|, 1e-6)`, which would shrink the direction
    and so the perturbation (NSL 1.4 did; see docs/compatibility.md).
    An all-zero example stays zero.
    """
    norm_type = norms.to_norm_type(norm_type)

    def divide(ts, size):
        return [t / ops.cast(_tensors.expand_to_rank(size, len(t.shape)),
                             t.dtype)
                for t in ts]

    peak = _tensors.reduce_across(ops.max, [ops.abs(t) for t in tensors])
    tensors = divide(tensors, ops.where(peak > 0, peak, ops.ones_like(peak)))
    if norm_type == "infinity":
        return tensors  # Already unit max-norm; all-zero examples stay zero.
    if norm_type == "l1":
        size = _tensors.reduce_across(ops.sum, [ops.abs(t) for t in tensors])
    else:
        size = ops.sqrt(_tensors.reduce_across(
            ops.sum, [ops.square(t) for t in tensors]))
    # A non-zero example now has norm >= 1; the floor only keeps all-zero
    # examples at zero.
    return divide(tensors, ops.maximum(size, 1e-6))


def virtual_adv_direction(inputs, embedding_fn, embedding, config,
                          seed=None, initial_direction=None,
                          distance_fn=None):
    """Finds the virtual adversarial direction by power iteration.

    Starting from a random unit vector `d` (masked, normalised in
    `adv_grad_norm`, jointly over all tensors of `inputs`), each of
    `num_approx_steps` iterations sets

        d <- normalize(mask * grad_r D(embedding, embedding_fn(x + r)))

    at `r = approx_difference * d`, where `D` is the configured distance.

    Args:
        inputs: a float tensor or structure of float tensors `x`.
        embedding_fn: function of the inputs returning the embedding (the
            predictions compared by the distance).
        embedding: `embedding_fn(inputs)`, treated as a constant.
        config: a `VirtualAdvConfig`.
        seed: int or `keras.random.SeedGenerator` for the random start.
        initial_direction: optional starting direction (structure of
            `inputs`) instead of a random one.
        distance_fn: optional `(embedding, perturbed_embedding) -> scalar`
            replacing the configured distance.

    Returns:
        The unit direction `d`, with the structure of `inputs` (constant).
    """
    neighbor_config = config.adv_neighbor_config
    norm = neighbor_config.adv_grad_norm
    flat_x = [ops.convert_to_tensor(x) for x in tree.flatten(inputs)]
    masks = tree.flatten(neighbor_config.feature_mask) if isinstance(
        neighbor_config.feature_mask, (dict, list, tuple)) else (
        [neighbor_config.feature_mask] * len(flat_x))
    if len(masks) != len(flat_x):
        raise ValueError(
            f"`feature_mask` has {len(masks)} entries but the inputs have "
            f"{len(flat_x)} tensors.")

    def masked_unit(ds):
        return _normalize_jointly(
            [feature_masks.apply_feature_mask(d, m)
             for d, m in zip(ds, masks)], norm)

    if initial_direction is not None:
        d = [ops.convert_to_tensor(t) for t in tree.flatten(initial_direction)]
    else:
        d = [keras.random.normal(ops.shape(x), dtype=x.dtype, seed=seed)
             for x in flat_x]
    d = masked_unit(d)
    embedding = ops.stop_gradient(embedding)

    if distance_fn is None:
        def distance_fn(clean, perturbed):
            return distances.pairwise_distance_wrapper(
                clean, perturbed, distance_config=config.distance_config)

    def distance_at(rs):
        perturbed = tree.pack_sequence_as(
            inputs, [x + r for x, r in zip(flat_x, rs)])
        return distance_fn(embedding, embedding_fn(perturbed))

    for _ in range(config.num_approx_steps):
        rs = [config.approx_difference * t for t in d]
        _, grads = gradients.value_and_input_gradients(distance_at, rs)
        d = masked_unit(grads)
    return tree.pack_sequence_as(inputs, [ops.stop_gradient(t) for t in d])


def virtual_adv_regularizer(input_layer, embedding_fn, virtual_adv_config,
                            embedding=None, *, seed=None,
                            initial_direction=None):
    """Virtual adversarial loss (VAT, Miyato et al. 2018).

    With `d` from `virtual_adv_direction` and
    `r_adv = adv_step_size * d`:

        loss = D(stop_gradient(embedding), embedding_fn(x + r_adv))

    where `D` is `pairwise_distance_wrapper` with
    `virtual_adv_config.distance_config`. No label is needed.

    Args:
        input_layer: a float tensor or structure of float tensors `x`.
        embedding_fn: function of the inputs returning the embedding.
        virtual_adv_config: a `VirtualAdvConfig`.
        embedding: optional `embedding_fn(input_layer)`, to save a forward
            pass.
        seed: int or `keras.random.SeedGenerator` for the random start.
        initial_direction: optional start of the power iteration (structure
            of `input_layer`) instead of a random one, for reproducibility.

    Returns:
        A scalar loss, differentiable with respect to the weights used by
        `embedding_fn` on the perturbed input.
    """
    if embedding is None:
        embedding = embedding_fn(input_layer)
    direction = virtual_adv_direction(
        input_layer, embedding_fn, embedding, virtual_adv_config, seed=seed,
        initial_direction=initial_direction)
    step = virtual_adv_config.adv_neighbor_config.adv_step_size
    perturbed = tree.map_structure(lambda x, d: x + step * d, input_layer,
                                   direction)
    return distances.pairwise_distance_wrapper(
        ops.stop_gradient(embedding), embedding_fn(perturbed),
        distance_config=virtual_adv_config.distance_config)
