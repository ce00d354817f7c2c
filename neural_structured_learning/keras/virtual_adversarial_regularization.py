"""Virtual adversarial training (VAT) of Keras models, for semi-supervised
learning.

`VirtualAdversarialRegularization` trains a classifier on batches that mix
labeled and unlabeled rows:

    loss = mean_{labeled i} CE(y_i, f(x_i))
           + multiplier * mean_{all i} KL(p(x_i) || p(x_i + r_adv,i))
           + entropy_weight * mean_{all i} H(p(x_i))

where `p(x)` is the model's (constant) prediction and `r_adv` the virtual
adversarial perturbation of radius `epsilon = adv_step_size`: starting from
a random unit `d`, `num_approx_steps` power iterations set
`d <- normalize(grad_r KL(p(x) || p(x + r)))` at `r = xi * d`
(`xi = approx_difference`), and `r_adv = epsilon * d`. No label is needed for
the KL term, so unlabeled rows regularize the model.

Reference: Miyato et al., 2018, "Virtual adversarial training: a
regularization method for supervised and semi-supervised learning",
https://arxiv.org/abs/1704.03976
"""

import attr
import keras
import numpy as np
from keras import ops
from keras import tree

from neural_structured_learning import _internals
from neural_structured_learning._core import naming
from neural_structured_learning._core import validation
from neural_structured_learning.configs import configs
from neural_structured_learning.keras import _distribution
from neural_structured_learning.keras import _wrapper
from neural_structured_learning.lib import adversarial_neighbor
from neural_structured_learning.lib import distances
from neural_structured_learning.lib import gradients
from neural_structured_learning.lib import regularizer


def default_vat_config():
    """The wrapper's default `VirtualAdvConfig`.

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


@keras.saving.register_keras_serializable(package="neural_structured_learning")
class VirtualAdversarialRegularization(_wrapper.LabeledWrapper):
    """Virtual adversarial training wrapper (see the module docstring).

    Unlabeled rows are marked by `unlabeled_label` (default -1) in the
    labels, or by a 0/1 mask under `label_mask_key` in the input dict. With
    integer labels a row is unlabeled when any of its entries is the
    marker; with float labels when all of them are (sparse labels `[B]` or
    `[B, 1]` equal to -1.0, or a dense/one-hot row of all -1.0). The
    supervised loss and the compiled metrics use labeled rows only; the VAT
    and entropy terms use every row. A batch may be entirely unlabeled.

    Only the clean pass updates moving statistics (BatchNormalization); the
    perturbed passes run in a scope that discards variable writes, as in
    Miyato et al.'s implementation.

    Metrics: `loss`, the supervised loss under its name (e.g.
    `sparse_categorical_crossentropy`), compiled metrics on labeled rows,
    `scaled_vat_loss` and, when `entropy_weight > 0`, `scaled_entropy`.

    Args:
        base_model: a classifier returning logits or probabilities
            `[batch, classes]` (or `[batch, 1]` for binary).
        vat_config: a `VirtualAdvConfig` (default `default_vat_config()`);
            with the 'kl_divergence' distance the KL is computed stably from
            logits; other distances use `pairwise_distance_wrapper`.
        multiplier: weight of the VAT loss (>= 0).
        label_keys: the key of the labels in the input dict (one output).
        sample_weight_key: optional key of sample weights (supervised loss).
        label_mask_key: optional key of a 0/1 labeled-row mask `[batch]` or
            `[batch, 1]` in the input dict.
        unlabeled_label: label value marking unlabeled rows (integer or
            float labels; None: every row is labeled).
        entropy_weight: weight of the entropy-minimisation term (>= 0).
        from_logits: whether the base model outputs logits; None infers it
            from the compiled loss's `from_logits` (False for string
            losses).
        seed: seed of the random start of the power iteration.
        perturbed_pass_training: training mode of the power-iteration and
            perturbed passes. None (default): the step's own flag, i.e.
            batch statistics in BatchNormalization and dropout on during
            `fit`, as in Miyato et al.'s code. False: inference mode
            (moving statistics, no dropout), which trained much better
            with BatchNormalization on MNIST with 100 labels (docs/vat.md).
        **kwargs: passed to `keras.Model`.
    """

    _METRICS_ON_WEIGHTED_ROWS = True

    def __init__(self, base_model, vat_config=None, multiplier=1.0,
                 label_keys=("label",), sample_weight_key=None,
                 label_mask_key=None, unlabeled_label=naming.UNLABELED,
                 entropy_weight=0.0, from_logits=None, seed=None,
                 base_with_labels_in_features=False,
                 perturbed_pass_training=None, **kwargs):
        kwargs.setdefault("name", "VirtualAdversarialRegularization")
        super().__init__(
            base_model, label_keys=label_keys,
            sample_weight_key=sample_weight_key,
            base_with_labels_in_features=base_with_labels_in_features,
            seed=seed, **kwargs)
        if vat_config is None:
            vat_config = default_vat_config()
        if not isinstance(vat_config, configs.VirtualAdvConfig):
            raise TypeError(
                "`vat_config` must be an nsl.configs.VirtualAdvConfig. "
                f"Received: {type(vat_config).__name__}")
        for name, value in (("multiplier", multiplier),
                            ("entropy_weight", entropy_weight)):
            if not value >= 0:
                raise ValueError(
                    f"`{name}` must be >= 0. Received: {name}={value!r}")
        if len(self.label_keys) != 1:
            raise ValueError(
                "VirtualAdversarialRegularization takes one label key (one "
                f"classifier output). Received: label_keys="
                f"{list(self.label_keys)}")
        self.vat_config = vat_config
        self.multiplier = float(multiplier)
        self.label_mask_key = label_mask_key
        self.unlabeled_label = unlabeled_label
        self.entropy_weight = float(entropy_weight)
        self.from_logits = from_logits
        if perturbed_pass_training not in (None, True, False):
            raise ValueError(
                "`perturbed_pass_training` must be None, True or False. "
                f"Received: {perturbed_pass_training!r}")
        self.perturbed_pass_training = perturbed_pass_training
        self._scaled_vat_loss = keras.metrics.Mean(name="scaled_vat_loss")
        self._scaled_entropy = (keras.metrics.Mean(name="scaled_entropy")
                                if self.entropy_weight > 0 else None)
        if getattr(base_model, "built", False):
            self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(vat_config=self.vat_config.get_config(),
                      multiplier=self.multiplier,
                      label_mask_key=self.label_mask_key,
                      unlabeled_label=self.unlabeled_label,
                      entropy_weight=self.entropy_weight,
                      from_logits=self.from_logits,
                      perturbed_pass_training=self.perturbed_pass_training)
        return config

    @classmethod
    def _configs_from_dicts(cls, config):
        return {"vat_config": configs.VirtualAdvConfig.from_config(
            config["vat_config"])}

    # -- Inputs -------------------------------------------------------------

    def _split_with_mask(self, x, y=None, sample_weight=None):
        """`(features, labels, sample_weight, mask or None)`."""
        mask = None
        if isinstance(x, dict) and self.label_mask_key in x:
            x = dict(x)
            mask = x.pop(self.label_mask_key)
        features, labels, sample_weight = self._split(x, y, sample_weight)
        return features, labels, sample_weight, mask

    def _labeled_mask(self, labels, mask, batch):
        """Float mask `[batch]`: 1 for labeled rows."""
        if mask is not None:
            mask = ops.convert_to_tensor(mask)
            if len(mask.shape) == 2 and mask.shape[1] == 1:
                mask = ops.squeeze(mask, axis=1)
            if len(mask.shape) != 1 or (mask.shape[0] is not None and
                                        batch is not None and
                                        mask.shape[0] != batch):
                raise ValueError(
                    f"The label mask {self.label_mask_key!r} must have shape "
                    f"[batch] or [batch, 1] (batch {batch}). Received shape "
                    f"{tuple(mask.shape)}.")
            return ops.cast(mask, "float32")
        labels = ops.convert_to_tensor(labels)
        dtype = keras.backend.standardize_dtype(labels.dtype)
        rows = ops.shape(labels)[0]
        is_int = keras.backend.is_int_dtype(dtype)
        if self.unlabeled_label is None or not (
                is_int or keras.backend.is_float_dtype(dtype)):
            return ops.ones((rows,), "float32")
        # A row is unlabeled when any integer entry is the marker, or when
        # every float entry is (sparse [B] or [B, 1] labels equal to -1, or
        # a dense row of all -1, which no one-hot or smoothed label can be).
        marker = ops.reshape(
            ops.equal(labels, ops.cast(self.unlabeled_label, dtype)),
            (rows, -1))
        unlabeled = (ops.any if is_int else ops.all)(marker, axis=1)
        return 1.0 - ops.cast(unlabeled, "float32")

    def _from_logits(self):
        if self.from_logits is not None:
            return bool(self.from_logits)
        losses = self._state.losses or []
        return bool(losses and getattr(losses[0][1], "from_logits", False))

    def _require_vat_labels(self, x, labels):
        if labels is None:
            self._require_labels(x, labels)

    # -- Forward pass and losses --------------------------------------------

    def call(self, inputs, training=False):
        features, _, _, _ = self._split_with_mask(inputs)
        return self._base(features, training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        features, labels, sample_weight, mask = self._split_with_mask(
            x, y, sample_weight)
        self._require_vat_labels(x, labels)
        batch = tree.flatten(y_pred)[0].shape[0]
        labeled = self._labeled_mask(labels, mask, batch)
        total = self._supervised_loss(labels, y_pred, sample_weight, labeled)
        for loss in self.losses:  # Regularizers of the clean pass.
            total = total + ops.cast(
                _internals.aggregate_additional_loss(self, loss), total.dtype)
        from_logits = self._from_logits()
        if self.multiplier > 0:
            perturbed_training = (training if self.perturbed_pass_training
                                  is None else self.perturbed_pass_training)
            scaled = self.multiplier * self.vat_loss(
                features, y_pred, training=perturbed_training,
                from_logits=from_logits)
            self._scaled_vat_loss.update_state(scaled)
            total = total + ops.cast(_distribution.scale(scaled), total.dtype)
        if self.entropy_weight > 0:
            scaled = self.entropy_weight * ops.mean(
                distances.entropy_from_outputs(y_pred, from_logits))
            self._scaled_entropy.update_state(scaled)
            total = total + ops.cast(_distribution.scale(scaled), total.dtype)
        return total

    def _safe_labels(self, labels, labeled):
        labels = ops.convert_to_tensor(labels)
        dtype = keras.backend.standardize_dtype(labels.dtype)
        if not (keras.backend.is_int_dtype(dtype)
                or keras.backend.is_float_dtype(dtype)):
            return labels
        # Unlabeled rows get label 0 (their loss is weighted 0): a -1 would
        # be an out-of-range class index for sparse losses (an error on
        # TensorFlow, NaN or a wrapped index elsewhere, and NaN * 0 = NaN).
        keep = ops.reshape(ops.cast(labeled, "bool"),
                           (-1,) + (1,) * (len(labels.shape) - 1))
        return ops.where(keep, labels, ops.zeros_like(labels))

    def _supervised_loss(self, labels, y_pred, sample_weight, labeled):
        """Mean of the labeled loss over labeled rows (0 if none)."""
        weights = labeled
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, "float32")
            weights = weights * ops.reshape(sample_weight, ops.shape(weights))
        batch = ops.cast(ops.shape(labeled)[0], "float32")
        # Keras losses average over the batch: rescale to labeled rows.
        loss = self._labeled_loss(self._safe_labels(labels, labeled), y_pred,
                                  weights)
        return loss * batch / ops.maximum(ops.sum(labeled), 1.0)

    def vat_loss(self, features, predictions, training=False,
                 from_logits=True, initial_direction=None):
        """`mean_i D(p(x_i), p(x_i + r_adv,i))` (see the module docstring).

        Args:
            features: the model's input (tensor, list or dict); its
                floating-point features are perturbed.
            predictions: the model's outputs on `features` (treated as
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
        config = attr.evolve(self.vat_config, adv_neighbor_config=attr.evolve(
            neighbor_config,
            feature_mask=[constraints.mask.get(k) for k in keys]))

        def embed(xs):
            return self._base(rebuild({**keyed, **dict(zip(keys, xs))}),
                              training)

        distance_fn = self._distance_fn(from_logits)
        clean = ops.stop_gradient(predictions)
        direction = regularizer.virtual_adv_direction(
            x0, embed, clean, config, seed=self._seed_generator,
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

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        _, labels, sample_weight, mask = self._split_with_mask(
            x, y, sample_weight)
        self._require_vat_labels(x, labels)
        batch = tree.flatten(y_pred)[0].shape[0]
        labeled = self._labeled_mask(labels, mask, batch)
        weights = labeled if sample_weight is None else labeled * ops.reshape(
            ops.cast(sample_weight, "float32"), ops.shape(labeled))
        return keras.Model.compute_metrics(
            self, x, self._safe_labels(labels, labeled), y_pred, weights)


def _check_same_features(x_labeled, x_unlabeled):
    """Raises unless both inputs have the same structure and row shapes."""
    if isinstance(x_labeled, dict) or isinstance(x_unlabeled, dict):
        if not (isinstance(x_labeled, dict)
                and isinstance(x_unlabeled, dict)):
            raise ValueError(
                "`x_labeled` and `x_unlabeled` must both be dicts or both "
                f"arrays. Received: {type(x_labeled).__name__} and "
                f"{type(x_unlabeled).__name__}.")
        if set(x_labeled) != set(x_unlabeled):
            raise ValueError(
                "`x_labeled` and `x_unlabeled` must have the same keys. "
                "Only in x_labeled: "
                f"{sorted(set(x_labeled) - set(x_unlabeled))}; only in "
                f"x_unlabeled: {sorted(set(x_unlabeled) - set(x_labeled))}.")
    try:
        tree.assert_same_structure(x_labeled, x_unlabeled)
    except (ValueError, TypeError) as error:
        raise ValueError(
            "`x_labeled` and `x_unlabeled` must have the same structure: "
            f"{error}") from None
    paths = ([f"[{k!r}]" for k in sorted(x_labeled)]
             if isinstance(x_labeled, dict) else None)
    labeled = tree.flatten(x_labeled)
    unlabeled = tree.flatten(x_unlabeled)
    for i, (a, b) in enumerate(zip(labeled, unlabeled)):
        shape_a, shape_b = np.shape(a)[1:], np.shape(b)[1:]
        if shape_a != shape_b:
            where = (paths[i] if paths and len(paths) == len(labeled)
                     else (f"[{i}]" if len(labeled) > 1 else ""))
            raise ValueError(
                f"`x_unlabeled{where}` rows have shape {shape_b}, but "
                f"`x_labeled{where}` rows have shape {shape_a}: unlabeled "
                "features must match the labeled ones after the batch axis "
                "(same width).")


class LabeledUnlabeledBatches(keras.utils.PyDataset):
    """Batches mixing labeled and unlabeled rows, for semi-supervised `fit`.

    Each batch holds `labeled_batch_size` labeled rows (reshuffled every
    time they run out) followed by `unlabeled_batch_size` unlabeled rows
    (one pass over them per epoch, shuffled), whose labels are
    `unlabeled_label`. Deterministic for a given `seed`.

    Args:
        x_labeled: labeled inputs (array, or dict of arrays) `[n_l, ...]`.
        y_labeled: their integer labels `[n_l]`.
        x_unlabeled: unlabeled inputs with the structure of `x_labeled`.
        labeled_batch_size: labeled rows per batch.
        unlabeled_batch_size: unlabeled rows per batch.
        unlabeled_label: label value of unlabeled rows.
        seed: shuffling seed.
        **kwargs: passed to `keras.utils.PyDataset` (e.g. `workers`).

    Raises:
        ValueError: batch sizes that are not integers >= 1, unlabeled
            features whose keys or row shapes differ from the labeled ones,
            no labeled rows, or labeled rows carrying `unlabeled_label`.
    """

    def __init__(self, x_labeled, y_labeled, x_unlabeled,
                 labeled_batch_size=32, unlabeled_batch_size=128,
                 unlabeled_label=naming.UNLABELED, seed=0, **kwargs):
        super().__init__(**kwargs)
        validation.check_int("labeled_batch_size", labeled_batch_size, 1)
        validation.check_int("unlabeled_batch_size", unlabeled_batch_size, 1)
        _check_same_features(x_labeled, x_unlabeled)
        self.x_labeled = x_labeled
        self.y_labeled = np.asarray(y_labeled)
        self.x_unlabeled = x_unlabeled
        self.n_labeled = len(self.y_labeled)
        self.n_unlabeled = len(tree.flatten(x_unlabeled)[0])
        if self.n_labeled == 0:
            raise ValueError("`x_labeled` is empty: VAT needs some labels.")
        if len(tree.flatten(x_labeled)[0]) != self.n_labeled:
            raise ValueError(
                "`x_labeled` and `y_labeled` have different lengths: "
                f"{len(tree.flatten(x_labeled)[0])} vs {self.n_labeled}.")
        if unlabeled_label is not None:
            marked = self.y_labeled.reshape(self.n_labeled, -1) == (
                unlabeled_label)
            marked = (marked.any(axis=1) if self.y_labeled.dtype.kind in "iu"
                      else marked.all(axis=1))
            if marked.any():
                raise ValueError(
                    f"`y_labeled` holds the unlabeled marker "
                    f"unlabeled_label={unlabeled_label!r} in "
                    f"{int(marked.sum())} row(s) (e.g. row "
                    f"{int(np.flatnonzero(marked)[0])}): those rows would be "
                    "trained as unlabeled. Fix the labels or pass another "
                    "`unlabeled_label`.")
        self.labeled_batch_size = labeled_batch_size
        self.unlabeled_batch_size = unlabeled_batch_size
        self.unlabeled_label = unlabeled_label
        self.seed = seed
        self._epoch = 0
        self._orders()

    def _orders(self):
        rng = np.random.default_rng([self.seed, self._epoch])
        batches = len(self)
        need = batches * self.labeled_batch_size
        reps = -(-need // self.n_labeled)
        self._labeled_order = np.concatenate(
            [rng.permutation(self.n_labeled) for _ in range(reps)])[:need]
        self._unlabeled_order = rng.permutation(self.n_unlabeled)

    def __len__(self):
        return max(1, self.n_unlabeled // self.unlabeled_batch_size)

    def on_epoch_end(self):
        self._epoch += 1
        self._orders()

    def __getitem__(self, index):
        lab = self._labeled_order[index * self.labeled_batch_size:
                                  (index + 1) * self.labeled_batch_size]
        unl = self._unlabeled_order[index * self.unlabeled_batch_size:
                                    (index + 1) * self.unlabeled_batch_size]
        x = tree.map_structure(
            lambda a, b: np.concatenate([a[lab], b[unl]]), self.x_labeled,
            self.x_unlabeled)
        y = np.concatenate([
            self.y_labeled[lab],
            np.full((len(unl),) + self.y_labeled.shape[1:],
                    self.unlabeled_label, self.y_labeled.dtype)])
        return x, y
