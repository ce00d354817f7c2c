"""The TRADES term: robustness as a divergence from the clean prediction.

    term  = beta * mean_i KL(p(x_i) || p(x_adv,i))
    x_adv = argmax_{||x' - x_i|| <= eps} KL(p(x_i) || p(x'))    (PGD)

with `beta = multiplier`. NSL's adversarial term trains on the labeled loss
at a neighbour that maximises that loss; TRADES instead keeps the model's
prediction at the neighbour close to its own clean prediction, which trades
a little clean accuracy for robustness more gracefully (its reference
results hold under AutoAttack). As in the authors' code:

* the attack starts at `x + init_stddev * N(0, I)` (at `x' = x` the KL and
  its gradient vanish) and takes `pgd_iterations` signed-gradient steps
  of `adv_step_size`, projected on the `pgd_epsilon` ball and clipped to
  the clip bounds, with the model in inference mode (`attack_training`);
* in the term, the gradient flows through both `p(x)` and `p(x_adv)`.

Here the first step is taken from `x` along the gradient at the noisy start
(the noise, of order 1e-3, is not kept in the neighbour), and only
floating-point features are perturbed. The KL needs no label, so every row
counts, labeled or not. Add the clean loss with `RegularizedModel`'s
labeled loss: `RegularizedModel(base, terms=[TradesTerm(config)])`.

Reference: Zhang et al., 2019, "Theoretically principled trade-off between
robustness and accuracy", https://arxiv.org/abs/1901.08573
"""

import keras
from keras import ops

from neural_structured_learning.configs import configs
from neural_structured_learning.keras import _distribution
from neural_structured_learning.keras.terms import _term
from neural_structured_learning.lib import adversarial_neighbor
from neural_structured_learning.lib import distances
from neural_structured_learning.lib import gradients


def trades_config(epsilon=0.3, step_size=0.01, steps=40, beta=6.0,
                  clip=(0.0, 1.0)):
    """An `AdvRegConfig` for TRADES: L-inf PGD on the KL, `beta` weight.

    The defaults are the authors' MNIST settings (eps 0.3, 40 steps of
    0.01, inputs in [0, 1]; their CIFAR-10 ones: eps 8/255, 10 steps of
    2/255); `beta` (1/lambda) 6 is the paper's robustness-leaning choice.
    """
    low, high = (None, None) if clip is None else clip
    return configs.make_adv_reg_config(
        multiplier=beta, adv_step_size=step_size, adv_grad_norm="infinity",
        pgd_iterations=steps, pgd_epsilon=epsilon, clip_value_min=low,
        clip_value_max=high)


@keras.saving.register_keras_serializable(package="neural_structured_learning")
class TradesTerm(_term.Term):
    """`beta * mean_i KL(p(x_i) || p(x_adv,i))` (see the module docstring).

    Args:
        adv_config: an `AdvRegConfig`: `multiplier` is beta, and its
            neighbour config the attack (default `trades_config()`).
        from_logits: whether the base model outputs logits; None infers it
            from the compiled loss.
        attack_training: training mode of the attack's passes (False, as
            the authors' `model.eval()`).
        init_stddev: standard deviation of the attack's random start.
        name: the metric name.
    """

    metric_attribute = "_scaled_trades_loss"
    _CONFIGS = {"adv_config": configs.AdvRegConfig}
    uses_unlabeled_rows = True

    def __init__(self, adv_config=None, from_logits=None,
                 attack_training=False, init_stddev=1e-3,
                 name="scaled_trades_loss"):
        adv_config = adv_config if adv_config is not None else trades_config()
        if not isinstance(adv_config, configs.AdvRegConfig):
            raise TypeError(
                "`adv_config` must be an nsl.configs.AdvRegConfig (e.g. from "
                "nsl.keras.terms.trades_config). Received: "
                f"{type(adv_config).__name__}")
        if not init_stddev > 0:
            raise ValueError("`init_stddev` must be > 0. Received: "
                             f"init_stddev={init_stddev!r}")
        self.adv_config = adv_config
        self.from_logits = from_logits
        self.attack_training = bool(attack_training)
        self.init_stddev = float(init_stddev)
        self.name = name

    def get_config(self):
        return {"adv_config": self.adv_config.get_config(),
                "from_logits": self.from_logits,
                "attack_training": self.attack_training,
                "init_stddev": self.init_stddev, "name": self.name}

    def loss(self, model, step, index, training):
        if self.adv_config.multiplier == 0:
            return None
        from_logits = _term.resolve_from_logits(model, self.from_logits)
        clean = step.outputs
        if isinstance(clean, (list, tuple, dict)):
            raise ValueError("TradesTerm needs a base model with one output "
                             "(class logits or probabilities).")
        features = step.batch.features
        neighbor = self.neighbor(model, features, clean, from_logits)
        perturbed = model.run_base(neighbor, training)
        divergence = ops.mean(distances.kl_divergence_from_outputs(
            clean, perturbed, from_logits))
        return _distribution.unscale(self.adv_config.multiplier * divergence)

    def neighbor(self, model, features, clean, from_logits):
        """The PGD maximiser of `KL(p(x) || p(x'))` around `features`."""
        keys, x0, others = adversarial_neighbor.split_perturbable(features)
        if not x0:
            raise ValueError(
                f"No feature can be perturbed: {sorted(map(str, others))} "
                "are not floating-point. TRADES perturbs floating-point "
                "features.")
        config = self.adv_config.adv_neighbor_config
        constraints = adversarial_neighbor.Constraints(config, features)
        keyed, rebuild = adversarial_neighbor.keyed_view(features)
        target = ops.stop_gradient(clean)

        def features_at(xs):
            return rebuild({**keyed, **dict(zip(keys, xs))})

        def grad_fn(xs):
            def divergence(ys):
                outputs = model.run_base(features_at(ys),
                                         self.attack_training)
                return ops.sum(distances.kl_divergence_from_outputs(
                    target, outputs, from_logits))
            return gradients.value_and_input_gradients(divergence, xs)[1]

        first_grads = None
        if not config.random_init:
            start = [x + ops.cast(self.init_stddev, x.dtype)
                     * keras.random.normal(ops.shape(x), dtype=x.dtype,
                                           seed=model.seed_generator)
                     for x in x0]
            first_grads = grad_fn(start)
        adv = adversarial_neighbor.perturb(
            x0, keys, grad_fn, config, constraints, first_grads=first_grads,
            seed=model.seed_generator)
        return features_at(adv)
