"""Adversarial regularization of Keras models (FGSM and PGD neighbours).

`AdversarialRegularization` wraps a base model and trains it on

    loss = labeled_loss(y, f(x)) + multiplier * labeled_loss(y, f(x_adv))

where `x_adv` is the adversarial neighbour of `x` (see
`nsl.lib.adversarial_neighbor.perturb`). It hooks into Keras's own training
step through `call` and `compute_loss`, so `fit`, `evaluate`, `predict`,
callbacks, distribution and `jit_compile` work as for any Keras model, on
TensorFlow, JAX and PyTorch.

Reference: Goodfellow et al., 2015, https://arxiv.org/abs/1412.6572
"""

import attr
import keras
from keras import ops
from keras import tree

from neural_structured_learning import _internals
from neural_structured_learning.configs import configs
from neural_structured_learning.keras import _distribution
from neural_structured_learning.keras import _wrapper
from neural_structured_learning.lib import adversarial_neighbor
from neural_structured_learning.lib import gradients

_PACKAGE = "neural_structured_learning"


# ---------------------------------------------------------------------------
# The adversarial loss (function form).


def adversarial_loss(features, labels, model, loss_fn, sample_weights=None,
                     adv_config=None, predictions=None, labeled_loss=None,
                     gradient_tape=None, model_kwargs=None):
    """Adversarial loss of `model` on `features`, for custom training loops.

    Computes `loss_fn(labels, model(x_adv), sample_weights)` where `x_adv`
    is the adversarial neighbour of `features` under `adv_config`. The result
    is not multiplied by `adv_config.multiplier`.

    Backend-neutral by default: the input gradient comes from a fresh
    forward pass. NSL 1.4's form is also accepted: give the already computed
    `labeled_loss` (or `predictions`) together with the TensorFlow
    `gradient_tape` that recorded it (PyTorch: features with
    `requires_grad`), which saves that forward pass.

    Args:
        features: the inputs: a tensor, or a list or dict of tensors.
        labels: the labels.
        model: a callable (e.g. a `keras.Model`) mapping features to
            predictions.
        loss_fn: `(labels, predictions, sample_weights) -> scalar`, e.g. a
            `keras.losses.Loss`.
        sample_weights: optional sample weights, `[batch]` or `[batch, 1]`.
        adv_config: an `AdvRegConfig` (default `AdvRegConfig()`).
        predictions: optional `model(features)` recorded by
            `gradient_tape` (TensorFlow).
        labeled_loss: optional loss recorded by `gradient_tape`.
        gradient_tape: TensorFlow tape that recorded the two above.
        model_kwargs: keyword arguments for `model`, e.g. `{'training': True}`.

    Returns:
        A scalar tensor.
    """
    adv_config = adv_config or configs.AdvRegConfig()
    model_kwargs = model_kwargs or {}

    def model_fn(x):
        return model(x, **model_kwargs)

    def loss_of(x):
        return loss_fn(labels, model_fn(x), sample_weights)

    if labeled_loss is None and predictions is not None and (
            gradient_tape is not None):
        with gradient_tape:  # 1.4's form: predictions recorded on the tape.
            labeled_loss = loss_fn(labels, predictions, sample_weights)
    if labeled_loss is None:
        labeled_loss = loss_of  # Backend-neutral: a fresh forward pass.
    adv_input, _ = adversarial_neighbor.gen_adv_neighbor(
        features, labeled_loss, adv_config.adv_neighbor_config,
        gradient_tape=gradient_tape, pgd_model_fn=model_fn,
        pgd_loss_fn=lambda y, p: loss_fn(y, p, sample_weights),
        pgd_labels=labels)
    return loss_fn(labels, model_fn(adv_input), sample_weights)


# ---------------------------------------------------------------------------
# The wrapper.


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AdversarialRegularization(_wrapper.LabeledWrapper):
    """Adversarial regularization wrapper of a Keras model.

    Trains `base_model` on
    `labeled_loss(y, f(x)) + multiplier * labeled_loss(y, f(x_adv))`, with
    `x_adv` an FGSM/PGD neighbour of `x` (per `adv_config`). Metrics:
    `loss` (the total), each output's labeled loss under the loss's name
    (e.g. `sparse_categorical_crossentropy`), the compiled metrics (named as
    in NSL 1.4, e.g. 'accuracy' becomes `sparse_categorical_accuracy`), and
    `scaled_adversarial_loss`.

    Data can come two ways:

    * NSL 1.4's: one dict holding features, labels (`label_keys`) and
      optionally sample weights (`sample_weight_key`):
      `fit({'image': x, 'label': y})`.
    * Plain Keras: `fit(x, y, sample_weight=...)` with arrays, `tf.data`,
      `keras.utils.PyDataset` or a torch `DataLoader`, where `x` is a tensor
      or a dict/list of tensors.

    Only floating-point features are perturbed; others pass through. The
    served model is `base_model`, unchanged; `predict` needs no labels.

    Efficiency: in training, the clean forward pass is recorded
    (`nsl.lib.gradients.forward_with_loss_gradients`), the labeled loss is
    computed on that recording, and a single backward pass gives its
    gradient with respect to both the inputs (for the neighbour) and the
    weights, which `compute_loss` hands to Keras's
    training step; FGSM then costs one more forward-backward, on the
    neighbour. Extra
    PGD steps run as scratch passes whose variable writes (BatchNorm moving
    statistics, dropout seeds) are discarded, on every backend alike; the
    clean and adversarial passes update them as usual.

    Args:
        base_model: the `keras.Model` (or layer) to regularize.
        label_keys: keys of the labels in the input dict, one per output of
            the base model, in output order.
        sample_weight_key: optional key of the sample weights in the input
            dict.
        adv_config: an `AdvRegConfig` (default `AdvRegConfig()`).
        base_with_labels_in_features: pass the labels in the feature dict to
            the base model too (for models that read them).
        seed: seed for `random_init` (new in this version).
        fuse_clean_pass: compute the labeled loss's weight gradient in the
            same backward pass as the input gradient (one backward pass less
            per step; see the class docstring). Ignored under a float16
            compute dtype ('mixed_float16'), where only Keras's own backward
            pass applies loss scaling. Set False for base models
            whose layers call `add_loss` in their forward pass with
            weight-dependent values other than activity regularizers (which
            are detected and handled).
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:
    >>> model = keras.Sequential([keras.Input((28, 28), name='feature'),
    ...                           keras.layers.Flatten(),
    ...                           keras.layers.Dense(10, 'softmax')])
    >>> adv_model = nsl.keras.AdversarialRegularization(
    ...     model, adv_config=nsl.configs.make_adv_reg_config(
    ...         multiplier=0.2, adv_step_size=0.05))
    >>> adv_model.compile('adam', 'sparse_categorical_crossentropy',
    ...                   ['accuracy'])
    >>> x_train = np.random.rand(64, 28, 28).astype('float32')
    >>> y_train = np.random.randint(0, 10, size=64)
    >>> history = adv_model.fit({'feature': x_train, 'label': y_train},
    ...                         batch_size=32, epochs=1, verbose=0)
    >>> for name in sorted(history.history):
    ...     print(name)
    loss
    scaled_adversarial_loss
    sparse_categorical_accuracy
    sparse_categorical_crossentropy
    >>> tuple(model(x_train[:2]).shape)  # The base model was trained.
    (2, 10)
    """

    def __init__(self, base_model, label_keys=("label",),
                 sample_weight_key=None, adv_config=None,
                 base_with_labels_in_features=False, seed=None,
                 fuse_clean_pass=True, **kwargs):
        kwargs.setdefault("name", "AdversarialRegularization")
        super().__init__(
            base_model, label_keys=label_keys,
            sample_weight_key=sample_weight_key,
            base_with_labels_in_features=base_with_labels_in_features,
            seed=seed, **kwargs)
        adv_config = adv_config if adv_config is not None else (
            configs.AdvRegConfig())
        if not isinstance(adv_config, configs.AdvRegConfig):
            raise TypeError(
                "`adv_config` must be an nsl.configs.AdvRegConfig (e.g. from "
                "nsl.configs.make_adv_reg_config). Received: "
                f"{type(adv_config).__name__}")
        self.adv_config = adv_config
        self.fuse_clean_pass = bool(fuse_clean_pass)
        self._scaled_adv_loss = keras.metrics.Mean(
            name="scaled_adversarial_loss")
        if getattr(base_model, "built", False):
            self.built = True

    def get_config(self):
        config = super().get_config()
        config["adv_config"] = self.adv_config.get_config()
        config["fuse_clean_pass"] = self.fuse_clean_pass
        return config

    @classmethod
    def _configs_from_dicts(cls, config):
        return {"adv_config": configs.AdvRegConfig.from_config(
            config["adv_config"])}


    def _wants_clean_gradient(self, training):
        neighbor = self.adv_config.adv_neighbor_config
        return (training and self.adv_config.multiplier > 0
                and not neighbor.random_init and self._state.losses is not None)

    def _fused_variables(self):
        """Weights whose gradient the clean pass computes itself.

        None when a layer adds a loss in its forward pass (an activity
        regularizer): the fused pass reads the weights as constants, so that
        loss would lose its weight gradient.
        """
        if not self.fuse_clean_pass:
            return []
        if getattr(self.base_model, "compute_dtype", None) == "float16":
            # Under 'mixed_float16' Keras scales the loss before its own
            # backward pass so that float16 gradients do not underflow;
            # the fused pass would differentiate the unscaled loss.
            return []
        for layer in _internals.flatten_layers(self.base_model):
            if getattr(layer, "activity_regularizer", None) is not None:
                return []
        return list(self.base_model.trainable_variables)

    def call(self, inputs, training=False):
        features, _, _ = self._split(inputs)
        self._state.clean_pass = None
        if not self._wants_clean_gradient(training):
            return self._base(features, training)
        keys, x0, _ = adversarial_neighbor.split_perturbable(features)
        if not x0:
            return self._base(features, training)
        keyed, rebuild = adversarial_neighbor.keyed_view(features)

        def forward(xs):
            return self._base(rebuild({**keyed, **dict(zip(keys, xs))}),
                              training)

        variables = self._fused_variables()
        outputs, loss_gradients = gradients.forward_with_loss_gradients(
            forward, x0, variables)
        self._state.clean_pass = (outputs, loss_gradients, variables)
        return outputs

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        features, labels, sample_weight = self._split(x, y, sample_weight)
        self._require_labels(x, labels)
        clean_pass, self._state.clean_pass = self._state.clean_pass, None
        labeled = self._labeled_loss(labels, y_pred, sample_weight)
        first_grads = None
        if clean_pass is not None and clean_pass[0] is y_pred:
            _, loss_gradients, variables = clean_pass
            first_grads, weight_grads = loss_gradients(
                lambda preds: self._labeled_loss(labels, preds, sample_weight))
            if variables:
                labeled = _with_gradients(labeled, variables, weight_grads)
        total = labeled
        for loss in self.losses:  # Regularizers of the clean pass.
            total = total + ops.cast(
                _internals.aggregate_additional_loss(self, loss), total.dtype)
        if self.adv_config.multiplier == 0:
            return total
        adv_loss = self._adversarial_loss(features, labels, sample_weight,
                                          training, first_grads)
        scaled = self.adv_config.multiplier * adv_loss
        self._scaled_adv_loss.update_state(_distribution.unscale(scaled))
        return total + ops.cast(scaled, total.dtype)

    def _adversarial_loss(self, features, labels, sample_weight, training,
                          first_grads=None):
        neighbor = self._neighbor(features, labels, sample_weight, training,
                                  self.adv_config.adv_neighbor_config,
                                  first_grads)
        adv_pred = self._base(neighbor, training)
        return self._labeled_loss(labels, adv_pred, sample_weight)

    def _neighbor(self, features, labels, sample_weight, training, config,
                  first_grads=None):
        keys, x0, others = adversarial_neighbor.split_perturbable(features)
        if not x0:
            raise ValueError(
                f"No feature can be perturbed: {sorted(map(str, others))} "
                "are not floating-point. Adversarial regularization perturbs "
                "floating-point features; cast the input to float, or use "
                "an embedding-level perturbation.")
        constraints = adversarial_neighbor.Constraints(config, features)
        keyed, rebuild = adversarial_neighbor.keyed_view(features)

        def features_at(xs):
            return rebuild({**keyed, **dict(zip(keys, xs))})

        def grad_fn(xs):
            return gradients.value_and_input_gradients(
                lambda ys: self._labeled_loss(
                    labels, self._base(features_at(ys), training),
                    sample_weight), xs)[1]

        adv = adversarial_neighbor.perturb(
            x0, keys, grad_fn, config, constraints, first_grads=first_grads,
            seed=self._seed_generator)
        return features_at(adv)

    # -- Adversarial examples on demand ---------------------------------------

    def perturb_on_batch(self, x, y=None, sample_weight=None,
                         **config_kwargs):
        """Returns adversarial neighbours of a batch, as NumPy.

        Args:
            x: the batch: a dict with features and labels (as for `fit`), or
                features (a tensor, list or dict) with labels in `y`.
            y: labels, when not in `x`.
            sample_weight: optional sample weights.
            **config_kwargs: overrides of the `AdvNeighborConfig` fields
                (`adv_step_size`, `adv_grad_norm`, `pgd_iterations`,
                `pgd_epsilon`, `clip_value_min`, ...); None values are
                ignored.

        Returns:
            The perturbed batch in the structure of `x`; labels and sample
            weights in a dict are returned unchanged.
        """
        overrides = {k: v for k, v in config_kwargs.items() if v is not None}
        config = attr.evolve(self.adv_config.adv_neighbor_config,
                                     **overrides)
        x = tree.map_structure(ops.convert_to_tensor, x)
        features, labels, sample_weight = self._split(x, y, sample_weight)
        self._require_labels(x, labels)
        if self._state.losses is None:
            raise ValueError("Call `compile()` before `perturb_on_batch()`.")
        neighbor = self._neighbor(features, labels, sample_weight, False,
                                  config)
        if isinstance(x, dict):
            neighbor = {**x, **neighbor}
        return tree.map_structure(ops.convert_to_numpy, neighbor)


def _with_gradients(value, variables, grads):
    """`value`, whose gradient with respect to `variables` is `grads`.

    `stop_gradient(value) + (s - stop_gradient(s))` with
    `s = sum_i <v_i, stop_gradient(g_i)>`: the value is unchanged (the
    bracket is exactly 0) and differentiating it gives `g_i` for `v_i`, so
    the training step applies gradients computed in the clean pass without
    a second backward pass through it.
    """
    inner = sum(ops.sum(ops.cast(v.value, g.dtype) * ops.stop_gradient(g))
                for v, g in zip(variables, grads))
    return ops.stop_gradient(value) + ops.cast(
        inner - ops.stop_gradient(inner), value.dtype)
