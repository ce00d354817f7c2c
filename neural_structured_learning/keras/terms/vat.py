"""Virtual adversarial training (VAT) and entropy-minimisation terms.

    vat     = multiplier * mean_{all i} D(p(x_i), p(x_i + r_adv,i))
    entropy = weight * mean_{all i} H(p(x_i))

where `p(x)` is the model's (constant) prediction and `r_adv` the virtual
adversarial perturbation of radius `epsilon = adv_step_size`: starting from a
random unit `d`, `num_approx_steps` power iterations set
`d <- normalize(grad_r D(p(x), p(x + r)))` at `r = xi * d`
(`xi = approx_difference`), and `r_adv = epsilon * d`. Neither needs a
label, so unlabeled rows regularize the model.

Reference: Miyato et al., 2018, "Virtual adversarial training: a
regularization method for supervised and semi-supervised learning",
https://arxiv.org/abs/1704.03976
"""

import math

import attr
import keras
from keras import ops

from neural_structured_learning.configs import configs
from neural_structured_learning.keras.terms import _term
from neural_structured_learning.lib import adversarial_neighbor
from neural_structured_learning.lib import distances
from neural_structured_learning.lib import gradients
from neural_structured_learning.lib import regularizer

_PACKAGE = "neural_structured_learning"


def default_vat_config():
    """The default `VirtualAdvConfig` of VAT in this library.

    KL divergence between predictions, one power iteration, `xi = 1e-3`,
    `epsilon = 1.0`, both in the L2 norm over all features of an example.
    NSL 1.4's `VirtualAdvConfig()` defaults (squared L2 distance,
    `xi = 1e-6`, `epsilon = 0.001`) were made for embeddings: with float32
    probabilities that `xi` gives a zero or mostly-rounding-noise gradient
    (a KL of order 1e-12), so the wrapper computes the KL from logits when
    it can, and uses a larger `xi` (still small next to the norm of
    unit-scaled inputs). Tune
    `epsilon` to the scale of your inputs (see docs/vat.md).
    """
    return configs.VirtualAdvConfig(
        adv_neighbor_config=configs.AdvNeighborConfig(adv_step_size=1.0,
                                                      adv_grad_norm="l2"),
        distance_config=configs.DistanceConfig("kl_divergence",
                                               sum_over_axis=-1),
        num_approx_steps=1, approx_difference=1e-3)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class VirtualAdversarialTerm(_term.Term):
    """`multiplier * mean_i D(p(x_i), p(x_i + r_adv,i))` on every row.

    Args:
        vat_config: a `VirtualAdvConfig` (default `default_vat_config()`);
            with the 'kl_divergence' distance the KL is computed stably from
            logits; other distances use `pairwise_distance_wrapper`.
        multiplier: weight of the term (>= 0).
        from_logits: whether the base model outputs logits; None infers it
            from the compiled loss's `from_logits` (False for string
            losses).
        perturbed_pass_training: training mode of the power-iteration and
            perturbed passes. False (default): inference mode (moving
            statistics, no dropout), so the term's gradient cannot reach
            the weights through BatchNormalization's batch statistics
            (through them VAT flattens every prediction: see docs/vat.md).
            None: the step's own flag (batch statistics during `fit`, as
            in Miyato et al.'s code); True: always training mode.
        name: the metric name.
    """

    metric_attribute = "_scaled_vat_loss"
    _CONFIGS = {"vat_config": configs.VirtualAdvConfig}
    uses_unlabeled_rows = True

    def __init__(self, vat_config=None, multiplier=1.0, from_logits=None,
                 perturbed_pass_training=False, name="scaled_vat_loss"):
        if vat_config is None:
            vat_config = default_vat_config()
        if not isinstance(vat_config, configs.VirtualAdvConfig):
            raise TypeError(
                "`vat_config` must be an nsl.configs.VirtualAdvConfig. "
                f"Received: {type(vat_config).__name__}")
        if not multiplier >= 0:
            raise ValueError(
                f"`multiplier` must be >= 0. Received: multiplier="
                f"{multiplier!r}")
        if perturbed_pass_training not in (None, True, False):
            raise ValueError(
                "`perturbed_pass_training` must be None, True or False. "
                f"Received: {perturbed_pass_training!r}")
        self.vat_config = vat_config
        self.multiplier = float(multiplier)
        self.from_logits = from_logits
        self.perturbed_pass_training = perturbed_pass_training
        self.name = name

    def get_config(self):
        return {"vat_config": self.vat_config.get_config(),
                "multiplier": self.multiplier,
                "from_logits": self.from_logits,
                "perturbed_pass_training": self.perturbed_pass_training,
                "name": self.name}

    def loss(self, model, step, index, training):
        if self.multiplier == 0:
            return None
        if self.perturbed_pass_training is not None:
            training = self.perturbed_pass_training
        return self.multiplier * self.divergence(
            model, step.batch.features, step.outputs, training=training,
            from_logits=_term.resolve_from_logits(model, self.from_logits))

    def divergence(self, model, features, predictions, training=False,
                   from_logits=True, initial_direction=None):
        """`mean_i D(p(x_i), p(x_i + r_adv,i))` (see the module docstring).

        Args:
            model: the `RegularizedModel`.
            features: the base model's input (tensor, list or dict); its
                floating-point features are perturbed.
            predictions: the base model's outputs on `features` (treated as
                constants).
            training: training mode of the perturbed passes.
            from_logits: whether the outputs are logits.
            initial_direction: optional start of the power iteration, a list
                of tensors matching the floating-point features (for tests).

        Returns:
            A scalar.
        """
        keys, x0, others = adversarial_neighbor.split_perturbable(features)
        if not x0:
            raise ValueError(
                f"No feature can be perturbed: {sorted(map(str, others))} "
                "are not floating-point. VAT perturbs floating-point "
                "features.")
        keyed, rebuild = adversarial_neighbor.keyed_view(features)
        neighbor_config = self.vat_config.adv_neighbor_config
        constraints = adversarial_neighbor.Constraints(neighbor_config,
                                                        features)
        config = self.vat_config
        masks = [constraints.mask.get(k) for k in keys]
        if any(m is not None for m in masks):
            config = attr.evolve(config, adv_neighbor_config=attr.evolve(
                neighbor_config, feature_mask=masks))

        def embed(xs):
            return model.run_base(rebuild({**keyed, **dict(zip(keys, xs))}),
                                  training)

        distance_fn = self._distance_fn(from_logits)
        clean = ops.stop_gradient(predictions)
        direction = regularizer.virtual_adv_direction(
            x0, embed, clean, config, seed=model.seed_generator,
            initial_direction=initial_direction, distance_fn=distance_fn)
        epsilon = neighbor_config.adv_step_size
        # The perturbed pass trains the weights but leaves the moving
        # statistics (BatchNormalization) alone, as in Miyato et al.'s code:
        # averaging statistics of perturbed batches into them skews
        # inference.
        with gradients.scratch_scope():
            perturbed = embed([x + ops.cast(epsilon, x.dtype) * d
                               for x, d in zip(x0, direction)])
        return distance_fn(clean, perturbed)

    def _distance_fn(self, from_logits):
        distance_config = self.vat_config.distance_config
        if distance_config.distance_type == configs.DistanceType.KL_DIVERGENCE:
            def kl(clean, perturbed):
                return ops.mean(distances.kl_divergence_from_outputs(
                    clean, perturbed, from_logits))
            return kl

        def configured(clean, perturbed):
            return distances.pairwise_distance_wrapper(
                clean, perturbed, distance_config=distance_config)
        return configured


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EntropyTerm(_term.Term):
    """`weight * scale * mean_i H(p(x_i))` on every row (entropy
    minimisation).

    Args:
        weight: weight of the term (>= 0).
        from_logits: as `VirtualAdversarialTerm`.
        name: the metric name.
        scale: None, or a scalar non-trainable `keras.Variable` tracked by
            the model (the VAT wrapper's ramp-up: see
            `VirtualAdversarialRegularization(entropy_rampup_epochs=...)`).
    """

    metric_attribute = "_scaled_entropy"
    uses_unlabeled_rows = True

    def __init__(self, weight=1.0, from_logits=None, name="scaled_entropy",
                 scale=None):
        if not weight >= 0:
            raise ValueError(
                f"`entropy_weight` must be >= 0. Received: entropy_weight="
                f"{weight!r}")
        self.weight = float(weight)
        self.from_logits = from_logits
        self.name = name
        self.scale = scale

    def get_config(self):
        return {"weight": self.weight, "from_logits": self.from_logits,
                "name": self.name}

    def loss(self, model, step, index, training):
        if self.weight == 0:
            return None
        weight = self.weight
        if self.scale is not None:
            weight = weight * ops.cast(self.scale, step.outputs.dtype)
        return weight * ops.mean(distances.entropy_from_outputs(
            step.outputs, _term.resolve_from_logits(model, self.from_logits)))


def rampup(epoch, epochs):
    """Laine and Aila's sigmoid ramp-up: `exp(-5 (1 - min(epoch / epochs,
    1))^2)`, from exp(-5) = 0.0067 at epoch 0 to 1 at `epochs` (1 when
    `epochs` is 0)."""
    if not epochs:
        return 1.0
    t = min(epoch / epochs, 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


class EntropyRampUp(keras.callbacks.Callback):
    """Sets `variable` to `rampup(epoch, epochs)` at the start of every
    epoch and logs it as `entropy_ramp` (added by the VAT wrapper's `fit`)."""

    def __init__(self, variable, epochs):
        super().__init__()
        self.variable, self.epochs = variable, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(rampup(epoch, self.epochs))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["entropy_ramp"] = rampup(epoch, self.epochs)
