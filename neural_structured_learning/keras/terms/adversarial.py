"""The adversarial regularization term (FGSM and PGD neighbours).

    term = multiplier * labeled_loss(y, f(x_adv))

where `x_adv` is the adversarial neighbour of `x` under `AdvRegConfig`
(`nsl.lib.adversarial_neighbor.perturb`). Reference: Goodfellow et al.,
2015, https://arxiv.org/abs/1412.6572
"""

import keras

from neural_structured_learning.configs import configs
from neural_structured_learning.keras import _distribution
from neural_structured_learning.keras.terms import _term
from neural_structured_learning.lib import adversarial_neighbor
from neural_structured_learning.lib import gradients


@keras.saving.register_keras_serializable(package="neural_structured_learning")
class AdversarialTerm(_term.Term):
    """`multiplier * labeled_loss(y, f(x_adv))` (see the module docstring).

    The neighbour starts from the labeled loss's input gradient in the
    model's clean pass, as NSL 1.4 (also when other terms add rows to that
    pass, e.g. graph neighbours: the recording covers them and the batch's
    rows are read). With `fuse_clean_pass` and no other term
    differentiating through the clean outputs, the same backward pass gives
    the labeled loss's weight gradient: FGSM then costs one more
    forward-backward pass, on the neighbour. Extra PGD steps (and the first
    one with `random_init`, or in a custom loop that calls `compute_loss`
    without `call`) are scratch passes whose variable writes (BatchNorm
    moving statistics, dropout seeds) are discarded, so they see the
    dropout mask of the adversarial pass that follows. Only floating-point features
    are perturbed; with unlabeled rows, the loss covers labeled rows.

    Args:
        adv_config: an `AdvRegConfig` (default `AdvRegConfig()`).
        fuse_clean_pass: see above (set False for base models whose layers
            call `add_loss` with weight-dependent values other than activity
            regularizers, which are detected).
        name: the metric name.
    """

    metric_attribute = "_scaled_adv_loss"
    _CONFIGS = {"adv_config": configs.AdvRegConfig}

    def __init__(self, adv_config=None, fuse_clean_pass=True,
                 name="scaled_adversarial_loss"):
        adv_config = adv_config if adv_config is not None else (
            configs.AdvRegConfig())
        if not isinstance(adv_config, configs.AdvRegConfig):
            raise TypeError(
                "`adv_config` must be an nsl.configs.AdvRegConfig (e.g. from "
                "nsl.configs.make_adv_reg_config). Received: "
                f"{type(adv_config).__name__}")
        self.adv_config = adv_config
        self.fuse_clean_pass = bool(fuse_clean_pass)
        self.name = name

    def get_config(self):
        return {"adv_config": self.adv_config.get_config(),
                "fuse_clean_pass": self.fuse_clean_pass, "name": self.name}

    def wants_recording(self, model, training):
        del model
        return (training and self.adv_config.multiplier > 0
                and not self.adv_config.adv_neighbor_config.random_init)

    def fuses_clean_pass(self, model):
        del model
        return self.fuse_clean_pass

    def loss(self, model, step, index, training):
        if self.adv_config.multiplier == 0:
            return None
        batch = step.batch
        neighbor = self.neighbor(model, batch, training,
                                 self.adv_config.adv_neighbor_config,
                                 step.input_gradients)
        adv_loss = model.labeled_loss(batch, model.run_base(neighbor,
                                                            training))
        return _distribution.unscale(self.adv_config.multiplier * adv_loss)

    def neighbor(self, model, batch, training, config, first_grads=None):
        """The adversarial neighbour of `batch.features` under `config`.

        `first_grads`: optional `{feature key: gradient}` of the labeled
        loss (from the recorded clean pass) to start from.
        """
        features = batch.features
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
                lambda ys: model.labeled_loss(
                    batch, model.run_base(features_at(ys), training)), xs)[1]

        adv = adversarial_neighbor.perturb(
            x0, keys, grad_fn, config, constraints,
            first_grads=(None if first_grads is None
                         else [first_grads[k] for k in keys]),
            seed=model.seed_generator)
        return features_at(adv)
