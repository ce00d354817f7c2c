"""Losses and metrics of the wrappers, resolved as NSL 1.4 did.

Used by `RegularizedModel.compile` (`regularized_model.py`): losses per
output, 'accuracy'/'crossentropy' resolved from the loss ('accuracy' with a
sparse categorical loss is a `SparseCategoricalAccuracy`, reported as
`accuracy`, and as 1.4's `sparse_categorical_accuracy` too by
`AdversarialRegularization`), each output's labeled loss tracked under the
loss's name, duplicates named `name_2`, ...;
plus `metrics_names` (Keras's list with the compiled metrics expanded) and
the error translation of `nonfinite_gradient='raise'`.
"""

import contextlib

import keras
from keras import ops
from keras import tree

from neural_structured_learning import _internals
from neural_structured_learning.keras import _distribution
from neural_structured_learning.lib import adversarial_neighbor


# ---------------------------------------------------------------------------
# Losses and metrics, resolved and named as in NSL 1.4.


class FunctionLoss(keras.losses.Loss):
    """A loss function `fn(y_true, y_pred) -> per-example losses` as a Loss."""

    def __init__(self, fn, name):
        super().__init__(name=name)
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


def name_of(obj):
    if isinstance(obj, str):
        return obj
    name = getattr(obj, "name", None) or getattr(obj, "__name__", None)
    return name or type(obj).__name__


def get_loss(identifier):
    loss = keras.losses.get(identifier)
    if loss is None:
        raise ValueError(f"Unknown loss: {identifier!r}")
    if isinstance(loss, keras.losses.Loss):
        return loss
    return FunctionLoss(loss, name=name_of(loss))


def per_output(value, output_names, what):
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


def resolve_metric(identifier, loss):
    """Resolves 'accuracy'/'crossentropy' from the loss, as 1.4 did."""
    if isinstance(identifier, str) and identifier in ("accuracy", "acc",
                                                      "crossentropy", "ce"):
        suffix = ("accuracy" if identifier in ("accuracy", "acc")
                  else "crossentropy")
        loss_name = name_of(loss)
        if loss_name in ("binary_crossentropy", "hinge", "squared_hinge"):
            identifier = "binary_" + suffix
        elif loss_name == "sparse_categorical_crossentropy":
            identifier = "sparse_categorical_" + suffix
        else:
            identifier = "categorical_" + suffix
    metric = keras.metrics.get(identifier)
    if not isinstance(metric, keras.metrics.Metric):
        # The Metric class of a function (`sparse_categorical_accuracy` ->
        # `SparseCategoricalAccuracy`), as Keras's compile uses: same value,
        # and it knows its direction (`EarlyStopping(monitor=...)`).
        name = name_of(metric)
        try:
            metric = keras.metrics.get(
                "".join(word.capitalize() for word in name.split("_")))
        except ValueError:
            metric = keras.metrics.MeanMetricWrapper(metric, name=name)
    return metric


class LossMetric(keras.metrics.Mean):
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


class IgnoringSampleWeight(keras.metrics.Metric):
    """A metric that ignores the sample weights Keras hands it.

    The wrapper passes all its metrics to Keras as `weighted_metrics`, so
    that Keras reports them in NSL 1.4's order (each output's labeled loss,
    then its metrics); this restores the plain (unweighted) `metrics`.
    """

    def __init__(self, metric):
        super().__init__(name=metric.name, dtype=metric.dtype)
        self.metric = metric
        if hasattr(metric, "_direction"):  # Read by EarlyStopping's "auto".
            self._direction = metric._direction  # pylint: disable=protected-access

    def update_state(self, y_true, y_pred, sample_weight=None):
        del sample_weight
        return self.metric.update_state(y_true, y_pred)

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()


class Namer:
    """Unique metric names: `name`, `name_2`, ... (one counter for all).

    Each output's names get its prefix and suffix (NSL 1.4's wrappers:
    `accuracy_label2`; Keras: `output_2_accuracy`).
    """

    def __init__(self, prefixes, suffixes):
        self.prefixes = prefixes
        self.suffixes = suffixes
        self.seen = {}

    def __call__(self, name, output_index):
        name = self.prefixes[output_index] + name + self.suffixes[output_index]
        count = self.seen.get(name, 0) + 1
        self.seen[name] = count
        return name if count == 1 else f"{name}_{count}"



def metrics_per_output(metrics, output_names):
    """Expands a `metrics` argument to one list per output."""
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


def clone_metrics(metrics):
    """Fresh metric instances (strings and functions are kept)."""

    def clone(metric):
        if isinstance(metric, keras.metrics.Metric):
            return type(metric).from_config(metric.get_config())
        return metric

    if metrics is None:
        return None
    return tree.map_structure(clone, metrics)


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
