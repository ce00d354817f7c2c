"""Shared machinery of the wrappers that train a base model on its labels.

`LabeledWrapper` is a `keras.Model` around a base model that:

* takes NSL 1.4's feature dicts (labels under `label_keys`, optional sample
  weights under `sample_weight_key`) or plain Keras `(x, y, sample_weight)`;
* resolves losses and metrics per output and names them as NSL 1.4 did
  ('accuracy' with a sparse categorical loss is reported as
  `sparse_categorical_accuracy`, each output's labeled loss under the loss's
  name, duplicates as `name_2`, ...);
* saves and loads itself (`.keras`) with its base model and compile config.

Subclasses add a regularization term in `compute_loss`.
"""

import contextlib

import keras
from keras import ops
from keras import tree

from neural_structured_learning import _internals
from neural_structured_learning.keras import _base_model
from neural_structured_learning.keras import _distribution
from neural_structured_learning.lib import adversarial_neighbor


# ---------------------------------------------------------------------------
# Losses and metrics, resolved and named as in NSL 1.4.


class _FunctionLoss(keras.losses.Loss):
    """A loss function `fn(y_true, y_pred) -> per-example losses` as a Loss."""

    def __init__(self, fn, name):
        super().__init__(name=name)
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


def _name_of(obj):
    if isinstance(obj, str):
        return obj
    name = getattr(obj, "name", None) or getattr(obj, "__name__", None)
    return name or type(obj).__name__


def _get_loss(identifier):
    loss = keras.losses.get(identifier)
    if loss is None:
        raise ValueError(f"Unknown loss: {identifier!r}")
    if isinstance(loss, keras.losses.Loss):
        return loss
    return _FunctionLoss(loss, name=_name_of(loss))


def _per_output(value, output_names, what):
    """Expands a loss/metric spec to a list with one entry per output."""
    n = len(output_names)
    if isinstance(value, dict):
        missing = [name for name in output_names if name not in value]
        if missing:
            raise ValueError(
                f"{what} for {missing[0]} not found in `{what}` dictionary "
                f"(outputs: {output_names}).")
        return [value[name] for name in output_names]
    if isinstance(value, (list, tuple)) and what == "loss":
        if len(value) != n:
            raise ValueError(
                f"`loss` has {len(value)} entries but the model has {n} "
                "outputs.")
        return list(value)
    return [value] * n


def _resolve_metric(identifier, loss):
    """Resolves 'accuracy'/'crossentropy' from the loss, as 1.4 did."""
    if isinstance(identifier, str) and identifier in ("accuracy", "acc",
                                                      "crossentropy", "ce"):
        suffix = ("accuracy" if identifier in ("accuracy", "acc")
                  else "crossentropy")
        loss_name = _name_of(loss)
        if loss_name in ("binary_crossentropy", "hinge", "squared_hinge"):
            identifier = "binary_" + suffix
        elif loss_name == "sparse_categorical_crossentropy":
            identifier = "sparse_categorical_" + suffix
        else:
            identifier = "categorical_" + suffix
    metric = keras.metrics.get(identifier)
    if not isinstance(metric, keras.metrics.Metric):
        metric = keras.metrics.MeanMetricWrapper(metric,
                                                 name=_name_of(metric))
    return metric


class _LossMetric(keras.metrics.Mean):
    """Running mean of a loss `loss(y_true, y_pred, sample_weight)`.

    Batches are weighted by their size, or, with `mean_over_weights`, the
    loss is averaged over the weighted rows (`sum(l * w) / sum(w)`) and
    batches are weighted by `sum(w)` (e.g. the number of labeled rows).
    """

    def __init__(self, loss, name, mean_over_weights=False):
        super().__init__(name=name)
        self.loss = loss
        self.mean_over_weights = mean_over_weights

    def update_state(self, y_true, y_pred, sample_weight=None):
        value = _distribution.unscale(self.loss(y_true, y_pred,
                                                sample_weight))
        weight = ops.cast(ops.shape(tree.flatten(y_pred)[0])[0], "float32")
        if self.mean_over_weights and sample_weight is not None:
            total = ops.sum(ops.cast(sample_weight, "float32"))
            value = value * weight / ops.maximum(total, 1e-12)
            weight = total
        return super().update_state(value, sample_weight=weight)


class _IgnoringSampleWeight(keras.metrics.Metric):
    """A metric that ignores the sample weights Keras hands it.

    The wrapper passes all its metrics to Keras as `weighted_metrics`, so
    that Keras reports them in NSL 1.4's order (each output's labeled loss,
    then its metrics); this restores the plain (unweighted) `metrics`.
    """

    def __init__(self, metric):
        super().__init__(name=metric.name, dtype=metric.dtype)
        self.metric = metric

    def update_state(self, y_true, y_pred, sample_weight=None):
        del sample_weight
        return self.metric.update_state(y_true, y_pred)

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()


class _State:
    """Plain per-model state kept out of Keras's attribute tracking."""

    def __init__(self):
        self.losses = None  # [(name, keras.losses.Loss, weight)] per output.
        self.clean_pass = None  # Set by call(), used by compute_loss().
        self.compile_args = None
        self.metric_names = []  # Compiled metrics, in Keras's result order.


class _Namer:
    """Unique metric names: `name`, `name_2`, ... (one counter for all)."""

    def __init__(self, suffixes):
        self.suffixes = suffixes
        self.seen = {}

    def __call__(self, name, output_index):
        name = name + self.suffixes[output_index]
        count = self.seen.get(name, 0) + 1
        self.seen[name] = count
        return name if count == 1 else f"{name}_{count}"



def metrics_names(model, compiled_names=None):
    """`model.metrics` names with the compiled metrics' container expanded.

    Keras 3 lists the compiled metrics under one name, `compile_metrics`,
    while `evaluate()` returns one value per compiled metric, in the order
    of the container's `metrics`. `compiled_names` (known at compile time)
    stands for them before the container is built.
    """
    names = []
    for metric in model.metrics:
        # Keras's container of the compiled metrics (pinned by
        # `test_metrics_names_match_evaluate`).
        if metric.name == _internals.COMPILE_METRICS_NAME:
            built = _internals.compiled_metric_names(metric)
            names.extend(built or compiled_names or [])
        else:
            names.append(metric.name)
    return names


@contextlib.contextmanager
def nonfinite_gradient_errors_first():
    """Re-raises a runtime check's failure with its message first.

    `nonfinite_gradient='raise'` checks inside the compiled step, so
    TensorFlow reports it as an `InvalidArgumentError` whose message opens
    with "Graph execution error" and a stack of node locations, and JAX as
    a `JaxRuntimeError` from a callback. This raises `FloatingPointError`
    with the library's message as its first line instead (the backend's
    error type and last line follow it).
    """
    try:
        yield
    except FloatingPointError:
        raise
    except Exception as error:  # pylint: disable=broad-except
        text = str(error)
        marker = adversarial_neighbor.NONFINITE_GRADIENT_MESSAGE
        if marker not in text:
            raise
        last = [line for line in text.splitlines() if line.strip()][-1]
        raise FloatingPointError(
            f"{marker}\n(raised inside the compiled step as "
            f"{type(error).__name__}: {last.strip()})") from None


# ---------------------------------------------------------------------------
# The base class.


class LabeledWrapper(keras.Model):
    """Base class of the regularization wrappers (see the module docstring).

    Subclasses that train on a subset of rows (marked by sample weights)
    set `_METRICS_ON_WEIGHTED_ROWS = True`: every compiled metric then gets
    the sample weights, and the labeled-loss metric averages over them.

    Args:
        base_model: the `keras.Model` (or layer) to regularize.
        label_keys: keys of the labels in the input dict, one per output of
            the base model, in output order.
        sample_weight_key: optional key of the sample weights in the input
            dict.
        base_with_labels_in_features: pass the labels in the feature dict to
            the base model too (for models that read them).
        seed: seed of the wrapper's random draws.
        **kwargs: passed to `keras.Model` (e.g. `name`).
    """

    _METRICS_ON_WEIGHTED_ROWS = False

    def __init__(self, base_model, label_keys=("label",),
                 sample_weight_key=None, base_with_labels_in_features=False,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(base_model):
            raise TypeError(
                "`base_model` must be a Keras model or layer. Received: "
                f"{type(base_model).__name__}")
        if isinstance(label_keys, str):
            label_keys = (label_keys,)
        self.base_model = base_model
        self.label_keys = tuple(label_keys)
        self.sample_weight_key = sample_weight_key
        self.base_with_labels_in_features = bool(base_with_labels_in_features)
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed)
        self._state = _State()

    # -- Keras plumbing -----------------------------------------------------

    @classmethod
    def _configs_from_dicts(cls, config):
        """Subclasses rebuild their config objects from `get_config` dicts."""
        del config
        return {}

    def build(self, input_shape=None):
        if not self.base_model.built:
            self.base_model.build(input_shape)
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(
            base_model=keras.saving.serialize_keras_object(self.base_model),
            label_keys=list(self.label_keys),
            sample_weight_key=self.sample_weight_key,
            base_with_labels_in_features=self.base_with_labels_in_features,
            seed=self.seed)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["base_model"] = keras.saving.deserialize_keras_object(
            config["base_model"], custom_objects=custom_objects)
        config.update(cls._configs_from_dicts(config))
        return cls(**config)

    def compile(self, optimizer="rmsprop", loss=None, metrics=None,
                loss_weights=None, weighted_metrics=None, **kwargs):
        """Configures the model for training, as `keras.Model.compile`.

        `loss` may be a loss name, function or `keras.losses.Loss`, a list
        (one per output) or a dict keyed by output name; `loss_weights` a
        list or dict. `metrics` is a list (applied to every output) or a list
        of lists / dict (per output). The base model is compiled too, so
        `base_model.evaluate` works.
        """
        if loss is None:
            raise ValueError(
                "`loss` is required: the wrapper trains the base model on its "
                "labeled loss plus the regularization.")
        _distribution.check_layout_map(self.base_model)
        self._state.compile_args = dict(
            optimizer=optimizer, loss=loss, metrics=metrics,
            loss_weights=loss_weights, weighted_metrics=weighted_metrics,
            **kwargs)
        output_names = self._output_names()
        losses = _per_output(loss, output_names, "loss")
        if loss_weights is None:
            weights = [1.0] * len(output_names)
        elif isinstance(loss_weights, (list, tuple, dict)):
            weights = _per_output(loss_weights, output_names, "loss_weights")
            if isinstance(loss_weights, (list, tuple)) and len(
                    loss_weights) != len(output_names):
                raise ValueError(
                    f"`loss_weights` has {len(loss_weights)} entries but the "
                    f"model has {len(output_names)} outputs.")
        else:
            raise TypeError(
                "`loss_weights` must be a list or a dict. Received: "
                f"{type(loss_weights).__name__}")
        suffixes = ([""] if len(output_names) == 1 else
                    [f"_{k}" for k in self._suffix_keys(output_names)])
        namer = _Namer(suffixes)
        loss_objects = [_get_loss(spec) for spec in losses]
        self._state.losses = [
            (namer(_name_of(obj), i), obj, float(w))
            for i, (obj, w) in enumerate(zip(loss_objects, weights))]

        # Per output: the labeled loss (with sample weights, as 1.4), the
        # metrics (unweighted, as Keras) and the weighted metrics, all handed
        # to Keras as weighted metrics so that they are reported in this
        # order (NSL 1.4's). Wrappers that train on labeled rows only weight
        # every metric by the mask.
        weighted = []
        per_output = self._metrics_per_output(metrics, output_names)
        per_output_weighted = self._metrics_per_output(weighted_metrics,
                                                       output_names)
        for i, (name, loss_obj, _) in enumerate(self._state.losses):
            resolved = []
            for spec in per_output[i] + per_output_weighted[i]:
                metric = _resolve_metric(spec, loss_obj)
                metric.name = namer(_name_of(metric), i)
                resolved.append(metric)
            n_plain = len(per_output[i])
            loss_metric = _LossMetric(
                loss_obj, name=name,
                mean_over_weights=self._METRICS_ON_WEIGHTED_ROWS)
            if not self._METRICS_ON_WEIGHTED_ROWS:
                resolved[:n_plain] = [_IgnoringSampleWeight(m)
                                      for m in resolved[:n_plain]]
            weighted.append([loss_metric] + resolved)
        self._state.metric_names = [m.name for ms in weighted for m in ms]
        if len(weighted) == 1:
            weighted = weighted[0]
        super().compile(optimizer=optimizer, weighted_metrics=weighted,
                        **kwargs)
        # The base model shares the optimizer's configuration but is
        # compiled on its own, for `base_model.evaluate`.
        base_metrics = metrics if not isinstance(metrics, dict) else None
        self.base_model.compile(
            optimizer=keras.optimizers.get(
                keras.optimizers.serialize(self.optimizer)),
            loss=loss, loss_weights=loss_weights, metrics=base_metrics)

    @property
    def metrics_names(self):
        """Names of the values `evaluate()` returns, in its order.

        As NSL 1.4: `loss`, each output's labeled loss and metrics, then the
        regularization terms (e.g. `scaled_adversarial_loss`). Keras's own
        list names the compiled metrics' container `compile_metrics`
        instead, so `dict(zip(model.metrics_names, model.evaluate(...)))`
        would mislabel the values.
        """
        return metrics_names(self, self._state.metric_names)

    def fit(self, x=None, y=None, batch_size=None, **kwargs):
        _distribution.check_batches(self, x, batch_size,
                                    kwargs.get("steps_per_epoch"))
        x, y = self._labels_beside_sample_weight(x, y, kwargs)
        with nonfinite_gradient_errors_first():
            return super().fit(x, y, batch_size=batch_size, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        _distribution.check_batches(self, x, batch_size,
                                    kwargs.get("steps"))
        x, y = self._labels_beside_sample_weight(x, y, kwargs)
        with nonfinite_gradient_errors_first():
            return super().evaluate(x, y, batch_size=batch_size, **kwargs)

    def _labels_beside_sample_weight(self, x, y, kwargs):
        """Moves labels out of an input dict when `sample_weight` is given.

        Keras drops `sample_weight` (and `class_weight`) without a word when
        `y` is None, which is always the case with NSL 1.4's dict input
        (`fit({'feature': x, 'label': y}, sample_weight=w)`). The labels are
        handed to Keras as `y` instead, so the weights are used.
        """
        if (y is not None or not isinstance(x, dict) or all(
                kwargs.get(k) is None
                for k in ("sample_weight", "class_weight"))):
            return x, y
        present = [k for k in self.label_keys if k in x]
        if len(present) != len(self.label_keys) or (
                self.base_with_labels_in_features):
            raise ValueError(
                "`sample_weight`/`class_weight` need the labels as `y` "
                "(Keras ignores them when `y` is not given): pass "
                "`fit(features, labels, sample_weight=...)`, or put the "
                "weights in the input dict under `sample_weight_key`.")
        labels = [x[k] for k in self.label_keys]
        x = {k: v for k, v in x.items() if k not in self.label_keys}
        return x, labels[0] if len(labels) == 1 else labels

    def train_on_batch(self, *args, **kwargs):
        with nonfinite_gradient_errors_first():
            return super().train_on_batch(*args, **kwargs)

    def test_on_batch(self, *args, **kwargs):
        with nonfinite_gradient_errors_first():
            return super().test_on_batch(*args, **kwargs)

    def get_compile_config(self):
        if self._state.compile_args is None:
            return {}
        return keras.saving.serialize_keras_object(self._state.compile_args)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _output_names(self):
        names = getattr(self.base_model, "output_names", None)
        outputs = getattr(self.base_model, "outputs", None)
        if names and outputs and len(names) == len(tree.flatten(outputs)):
            return list(names)
        return [f"output_{i + 1}" for i in range(len(self.label_keys))]

    def _suffix_keys(self, output_names):
        if len(self.label_keys) == len(output_names):
            return self.label_keys
        return output_names

    @staticmethod
    def _metrics_per_output(metrics, output_names):
        n = len(output_names)
        if metrics is None:
            return [[] for _ in range(n)]
        if isinstance(metrics, dict):
            return [list(tree.flatten(metrics.get(name, [])))
                    for name in output_names]
        if not isinstance(metrics, (list, tuple)):
            raise TypeError(
                "`metrics` must be a list or a dict. Received: "
                f"{type(metrics).__name__}")
        if metrics and all(isinstance(m, (list, tuple)) for m in metrics):
            if len(metrics) != n:
                raise ValueError(
                    f"`metrics` has {len(metrics)} lists but the model has "
                    f"{n} outputs.")
            return [list(m) for m in metrics]
        return [list(metrics) for _ in range(n)]

    # -- Splitting the input ------------------------------------------------

    def _split(self, x, y=None, sample_weight=None):
        """Returns `(features, labels, sample_weight)` from the batch."""
        if not isinstance(x, dict):
            return x, y, sample_weight
        present = [k for k in self.label_keys if k in x]
        features = {k: v if v is None or ops.is_tensor(v) else
                    ops.convert_to_tensor(v) for k, v in x.items()}
        if present:
            if len(present) != len(self.label_keys):
                missing = [k for k in self.label_keys if k not in x]
                raise ValueError(
                    f"Label key(s) {missing} not found in the input dict "
                    f"(keys: {sorted(x)}); label_keys={list(self.label_keys)}"
                    ".")
            if y is not None:
                raise ValueError(
                    f"Labels were given twice: as `y` and under "
                    f"{present} in the input dict. Give them one way.")
            labels = [x[k] for k in self.label_keys]
            y = labels[0] if len(labels) == 1 else labels
            if not self.base_with_labels_in_features:
                for k in present:
                    del features[k]
        if self.sample_weight_key is not None and self.sample_weight_key in x:
            if sample_weight is not None:
                raise ValueError(
                    "Sample weights were given twice: as `sample_weight` and "
                    f"under {self.sample_weight_key!r} in the input dict.")
            sample_weight = x[self.sample_weight_key]
            if not self.base_with_labels_in_features:
                del features[self.sample_weight_key]
        return features, y, sample_weight

    def _require_labels(self, x, y):
        if y is None:
            keys = sorted(x) if isinstance(x, dict) else None
            raise ValueError(
                f"Labels are not in the input: expected key(s) "
                f"{list(self.label_keys)} in the input dict"
                + (f" (found keys {keys})" if keys is not None else "")
                + ", or labels passed as `y`. To predict without labels, "
                "use `predict` or the base model.")

    # -- Forward pass and losses --------------------------------------------

    def _base(self, features, training):
        return _base_model.call(self.base_model, features, training=training)

    def _labeled_losses(self, labels, predictions, sample_weight):
        """Per-output losses `[(name, value, weight)]`."""
        flat_pred = tree.flatten(predictions)
        flat_labels = tree.flatten(labels)
        if len(flat_labels) != len(flat_pred) or len(flat_pred) != len(
                self._state.losses):
            raise ValueError(
                "The model has different number of outputs and labels. "
                f"({len(flat_pred)} vs. {len(flat_labels)}; "
                f"label_keys={list(self.label_keys)})")
        return [(name, loss(y, p, sample_weight), w)
                for (name, loss, w), y, p in zip(self._state.losses,
                                                 flat_labels, flat_pred)]

    def _labeled_loss(self, labels, predictions, sample_weight):
        return sum(w * value for _, value, w in self._labeled_losses(
            labels, predictions, sample_weight))

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        _, y, sample_weight = self._split(x, y, sample_weight)
        self._require_labels(x, y)
        if y is not None and isinstance(y_pred, (list, tuple)) and not (
                isinstance(y, (list, tuple))):
            y = [y]
        return super().compute_metrics(x, y, y_pred, sample_weight)
