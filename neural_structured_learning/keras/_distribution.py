"""Distributed training helpers: loss scaling and input checks.

Under `tf.distribute.MirroredStrategy` each replica computes its loss on its
share of the global batch and the gradients are summed across replicas, so a
per-replica *mean* must be divided by the number of replicas to give the mean
over the global batch. Keras's losses do this; the wrappers' own terms (VAT,
entropy, graph losses computed by `nsl.lib`) go through `scale`, and metrics
track `unscale`d values, exactly as Keras does for its own loss. On JAX,
`keras.distribution` runs one global (SPMD) program, and PyTorch has no
Keras distribution API, so both functions return their input there.
"""

import re

import keras
from keras import tree
from neural_structured_learning import _internals

scale = _internals.scale_loss_for_distribution
unscale = _internals.unscale_loss_for_distribution


def num_replicas(model=None):
    """Number of data-parallel replicas that share a global batch.

    From the active `keras.distribution` (the size of its batch axis), else
    from the model's `tf.distribute` strategy; 1 otherwise.
    """
    distribution = keras.distribution.distribution()
    if distribution is not None:
        mesh = distribution.device_mesh
        name = getattr(distribution, "batch_dim_name", None)
        if name in mesh.axis_names:
            return int(mesh.shape[list(mesh.axis_names).index(name)])
        return 1
    strategy = getattr(model, "distribute_strategy", None)
    return int(getattr(strategy, "num_replicas_in_sync", 1) or 1)


def check_batches(model, x, batch_size, steps_per_epoch=None):
    """Raises if array data would give a batch not divisible by replicas.

    Only in-memory arrays (or dicts/lists of them) are checked; datasets
    must be batched with a multiple of the number of replicas and drop
    their last partial batch (e.g. `batch(..., drop_remainder=True)`).
    """
    replicas = num_replicas(model)
    leaves = [v for v in tree.flatten(x) if hasattr(v, "shape")] if (
        x is not None) else []
    if replicas <= 1 or not leaves or not all(
            type(v).__module__.startswith("numpy") for v in leaves):
        return
    n = leaves[0].shape[0]
    batch = batch_size or 32
    last = n % batch if steps_per_epoch is None else 0
    for size, what in ((batch, "batch size"), (last, "last batch")):
        if size and size % replicas:
            raise ValueError(
                f"The {what} ({size}) is not divisible by the {replicas} "
                "data-parallel replicas: every replica must get the same "
                "number of examples, since the losses are means over the "
                f"global batch. Use a batch size that is a multiple of "
                f"{replicas} and a dataset size that is a multiple of the "
                "batch size (or drop the remainder: "
                "`tf.data.Dataset.batch(..., drop_remainder=True)`, or "
                "`steps_per_epoch`).")


def check_layout_map(base_model):
    """Raises if a `ModelParallel` layout-map key names no base weight."""
    distribution = keras.distribution.distribution()
    layout_map = _internals.layout_map(distribution)
    if not isinstance(distribution, keras.distribution.ModelParallel) or (
            layout_map is None):
        return
    paths = [v.path for v in base_model.weights]
    for key in layout_map.keys():
        if not any(re.search(key, path) for path in paths):
            raise ValueError(
                f"The ModelParallel layout map key {key!r} matches no weight "
                f"of the base model, so nothing would be sharded by it. "
                f"Weight paths: {paths}.")
