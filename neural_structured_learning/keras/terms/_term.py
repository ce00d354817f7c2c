"""The interface of a regularization term (see `RegularizedModel`)."""


class Term:
    """A regularization term of a `RegularizedModel`.

    A term says what it needs from the clean forward pass, adds one scalar
    to the loss (already multiplied by its own weight) and reports it as a
    metric under `name`. The model calls, per batch:

    1. `take_inputs(model, features)`: the term takes its own keys out of
       the input dict (e.g. packed neighbours) and checks them; the rest
       goes to the base model (`strip` only drops the keys).
    2. `extra_rows(model, taken, training)`: rows to run through the clean
       forward pass together with the batch (e.g. neighbours), or None.
       Their outputs and activations come back in `step.extra[index]`.
    3. `loss(model, step, index, training)`: the scalar (a global-batch
       mean; the model scales it per replica), or None when the term does
       not apply to this batch (reported as 0).

    Attributes:
        name: the metric name (e.g. 'scaled_adversarial_loss').
        metric_attribute: attribute under which the model tracks the metric
            (kept per wrapper, so that saved models keep their layout).
        regularized_layer: name of a base-model layer whose activations the
            term reads from `step.activations`, or None.
        uses_unlabeled_rows: the term learns from unlabeled rows (the model
            then restricts the labeled loss and metrics to labeled rows).
    """

    name = "scaled_loss"
    metric_attribute = None
    regularized_layer = None
    uses_unlabeled_rows = False

    def strip(self, features):
        """`features` without the term's own keys (no checks, no work)."""
        return features

    def take_inputs(self, model, features):
        """Returns `(features for the base model, what the term took)`."""
        del model
        return features, None

    def extra_rows(self, model, taken, training):
        """Features of rows to run with the batch in its clean pass."""
        del model, taken, training
        return None

    def wants_recording(self, model, training):
        """Whether the clean pass should be recorded for input gradients
        (`step.input_gradients`: the labeled loss's gradient with respect to
        the perturbable features)."""
        del model, training
        return False

    def fuses_clean_pass(self, model):
        """Whether the labeled loss's weight gradient may come from the
        recorded pass (True only if the term does not differentiate through
        the clean outputs itself)."""
        del model
        return False

    def check_base_model(self, model):
        """Raises if the term cannot work with `model.base_model`."""
        del model

    def loss(self, model, step, index, training):
        raise NotImplementedError

    # Arguments holding `nsl.configs` objects, rebuilt by `from_config`.
    _CONFIGS = {}

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**configs_from_dicts(config, cls._CONFIGS))


def resolve_from_logits(model, from_logits):
    """A term's `from_logits`: as given, or (None) the compiled loss's."""
    if from_logits is not None:
        return bool(from_logits)
    return model.loss_from_logits()


def configs_from_dicts(config, classes):
    """`config` with `{argument: config class}` dicts rebuilt as objects.

    E.g. `{'adv_config': {...}}` with `{'adv_config': AdvRegConfig}` gives
    `{'adv_config': AdvRegConfig.from_config({...})}`; other entries (and
    values that are not dicts) are kept.
    """
    config = dict(config)
    for name, config_cls in classes.items():
        if isinstance(config.get(name), dict):
            config[name] = config_cls.from_config(config[name])
    return config
