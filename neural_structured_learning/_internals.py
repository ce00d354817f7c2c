"""Every use of Keras's (and TensorFlow's and JAX's) private API, in one place.

The library otherwise uses public Keras 3 API only. Each function below
reaches into a framework's internals for one thing that has no public form;
`_internals_test.py` pins each of them, so a Keras release that changes one
fails that test (it also runs against the oldest supported Keras, see
`scripts/test.sh`) instead of breaking the library silently.

Imports are made inside the functions: this module is imported by
`_jax_flags` before JAX or Keras may be imported at all.
"""

import sys

# The name Keras 3 gives the container of a model's compiled metrics in
# `model.metrics` (its sub-metrics are in `.metrics`).
COMPILE_METRICS_NAME = "compile_metrics"


def get_stateless_scope():
    """The active `keras.StatelessScope`, or None (no public getter)."""
    from keras.src.backend.common import stateless_scope  # pylint: disable=import-outside-toplevel
    return stateless_scope.get_stateless_scope()


def flatten_layers(model):
    """Every layer inside `model` (recursively), `model` included."""
    return list(model._flatten_layers())  # pylint: disable=protected-access


def aggregate_additional_loss(model, loss):
    """A loss added with `add_loss`, reduced as Keras's `compute_loss` does."""
    return model._aggregate_additional_loss(loss)  # pylint: disable=protected-access


def scale_loss_for_distribution(value):
    """Divides a per-replica mean by the number of `tf.distribute` replicas
    (Keras's own losses do this; identity elsewhere)."""
    from keras.src.losses import loss  # pylint: disable=import-outside-toplevel
    return loss.scale_loss_for_distribution(value)


def unscale_loss_for_distribution(value):
    """The inverse of `scale_loss_for_distribution` (for metrics)."""
    from keras.src.losses import loss  # pylint: disable=import-outside-toplevel
    return loss.unscale_loss_for_distribution(value)


def layout_map(distribution):
    """The `keras.distribution.LayoutMap` of a `ModelParallel`, or None."""
    return getattr(distribution, "_layout_map", None)


def input_structure(model):
    """The structure of a functional (or Sequential) model's inputs: the
    `keras.Input` tensors in the nesting the model was built with."""
    struct = getattr(model, "_inputs_struct", None)
    functional = getattr(model, "_functional", None)
    if struct is None and functional is not None:
        struct = functional._inputs_struct  # pylint: disable=protected-access
    return struct


def compiled_metric_names(container):
    """Names of the sub-metrics of Keras's compiled-metrics container, in
    the order `evaluate()` returns them ([] until it is built)."""
    return [metric.name for metric in container.metrics]


def tf_in_xla_context():
    """Whether TensorFlow is tracing a function for XLA (`jit_compile`)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tensorflow.python.ops import control_flow_util  # pylint: disable=import-outside-toplevel,no-name-in-module
    graph = tf.compat.v1.get_default_graph()
    return bool(control_flow_util.GraphOrParentsInXlaContext(graph))


def jax_backends_started():
    """Whether JAX has initialised its backends (after which XLA_FLAGS are
    read no more). Imports nothing."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    return bool(bridge is not None and getattr(bridge, "_backends", None))
