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

from neural_structured_learning.configs import configs
from neural_structured_learning.keras import regularized_model
from neural_structured_learning.keras.terms import adversarial
from neural_structured_learning.lib import adversarial_neighbor

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
class AdversarialRegularization(regularized_model.RegularizedModel):
    """Adversarial regularization wrapper of a Keras model.

    Trains `base_model` on
    `labeled_loss(y, f(x)) + multiplier * labeled_loss(y, f(x_adv))`, with
    `x_adv` an FGSM/PGD neighbour of `x` (per `adv_config`). Metrics:
    `loss` (the total), each output's labeled loss under the loss's name
    (e.g. `sparse_categorical_crossentropy`), the compiled metrics (named as
    Keras names them, as in every wrapper: `'accuracy'` is `accuracy`; each
    is reported a second time under NSL 1.4's name where that differs, e.g.
    `sparse_categorical_accuracy`, for 1.4 code that reads it), and
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

    This is a `RegularizedModel` with one `nsl.keras.terms.AdversarialTerm`
    (see it for the cost of a step: FGSM costs one forward-backward pass
    more than the base step).

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
    accuracy
    loss
    scaled_adversarial_loss
    sparse_categorical_accuracy
    sparse_categorical_crossentropy
    >>> tuple(model(x_train[:2]).shape)  # The base model was trained.
    (2, 10)
    """

    _CONFIGS = {"adv_config": configs.AdvRegConfig}
    _NSL14_METRIC_ALIASES = True

    def __init__(self, base_model, label_keys=("label",),
                 sample_weight_key=None, adv_config=None,
                 base_with_labels_in_features=False, seed=None,
                 fuse_clean_pass=True, **kwargs):
        kwargs.setdefault("name", "AdversarialRegularization")
        term = adversarial.AdversarialTerm(adv_config, fuse_clean_pass)
        super().__init__(
            base_model, terms=[term], label_keys=label_keys,
            sample_weight_key=sample_weight_key,
            base_with_labels_in_features=base_with_labels_in_features,
            seed=seed, **kwargs)
        self.adv_config = term.adv_config
        self.fuse_clean_pass = term.fuse_clean_pass

    def get_config(self):
        config = super().get_config()
        config["adv_config"] = self.adv_config.get_config()
        config["fuse_clean_pass"] = self.fuse_clean_pass
        return config

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
        if self._parts.losses is None:
            raise ValueError("Call `compile()` before `perturb_on_batch()`.")
        x = tree.map_structure(ops.convert_to_tensor, x)
        batch = self._parse(x)
        self._complete(batch, x, y, sample_weight)
        neighbor = self.terms[0].neighbor(self, batch, False, config)
        if isinstance(x, dict):
            neighbor = {**x, **neighbor}
        return tree.map_structure(ops.convert_to_numpy, neighbor)
