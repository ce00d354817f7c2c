"""Graph regularization of Keras models.

`GraphRegularization` wraps a base model `f` and trains it on

    loss = labeled_loss(y, f(x)) + multiplier * graph_loss

    graph_loss = reduce_{i, j} w_ij * d(h(x_i), h(x_ij))

where `x_ij` is the `j`-th neighbour of sample `i` (at most `max_neighbors`),
`w_ij` its edge weight (0 for padding), `h` the regularized tensor (the base
model's output, or a named intermediate layer) and `d`/`reduce` the distance
and reduction of `DistanceConfig` (`nsl.lib.pairwise_distance_wrapper`). It
hooks into Keras's own training step through `call` and `compute_loss`, so
`fit`, `evaluate`, `predict`, callbacks and `jit_compile` work as for any
Keras model, on TensorFlow, JAX and PyTorch.

Reference: Bui et al., 2018, "Neural Graph Learning: Training Neural Networks
Using Graphs", https://research.google/pubs/pub46568/
"""

import warnings

import keras
from keras import ops
from keras import tree

from neural_structured_learning import _internals
from neural_structured_learning._core import naming
from neural_structured_learning.configs import configs
from neural_structured_learning.keras import _base_model
from neural_structured_learning.keras import _distribution
from neural_structured_learning.keras import _wrapper
from neural_structured_learning.keras.layers import neighbor_features
from neural_structured_learning.keras.layers import pairwise_distance
from neural_structured_learning.lib import neighbors as lib_neighbors

_PACKAGE = "neural_structured_learning"
_NEIGHBOR_PASSES = ("batched", "separate")


class _State:
    """Plain per-model state kept out of Keras's attribute tracking."""

    def __init__(self):
        self.graph_pass = None  # (y_pred, graph_loss), set by call().
        self.forward_model = None  # Base model + embedding output.


def _has_batch_statistics(model):
    if not isinstance(model, keras.layers.Layer):
        return False
    return any(isinstance(layer, keras.layers.BatchNormalization)
               for layer in _internals.flatten_layers(model))


def _expand_weights(weights, rank):
    """Reshapes `[B * N, 1]` weights to `[B * N, 1, ..., 1]` of `rank`."""
    if rank <= 2:
        return weights
    return ops.reshape(weights, (-1,) + (1,) * (rank - 1))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GraphRegularization(keras.Model):
    """Graph regularization wrapper of a Keras model.

    Trains `base_model` on `labeled_loss + multiplier * graph_loss`, with

        graph_loss = reduce_{i, j} w_ij * d(h(x_i), h(x_ij))

    over each sample `x_i` of the batch and its neighbours `x_ij`
    (`j < max_neighbors`) of weight `w_ij`; `h` is the base model's output,
    or the output of the layer named `embedding_layer`; `d` and `reduce`
    come from `graph_reg_config.distance_config`. With the default
    `DistanceConfig()` (L2, `SUM_BY_NONZERO_WEIGHTS`, no axis) this is
    `sum_ij w_ij * ||h_i - h_ij||^2 / (nnz(w) * D)`; with `sum_over_axis=-1`,
    `sum_ij w_ij * ||h_i - h_ij||^2 / nnz(w)`. Padded neighbours (weight 0)
    drop out of both sums.

    Input: a dict holding each sample feature `name`, its neighbour copies
    `{prefix}{i}_{name}` and weights `{prefix}{i}{weight_suffix}` (`[B, 1]`
    or `[B]`) for `i < max_neighbors`, with the labels as `y` (NSL 1.4's
    packed format, e.g. from `nsl.keras.NeighborBatchDataset`). Data without
    neighbour keys (a dict without them, a tensor, a list) runs the base
    model alone, so `evaluate` and `predict` need no neighbours. When the
    base model has named inputs (functional, Sequential with `keras.Input`),
    only those features need neighbour copies; other keys (e.g. `id`,
    `NL_num_nbrs`) are ignored.

    Metrics: `loss` (the total), the compiled metrics, and
    `scaled_graph_loss` (`multiplier * graph_loss`, 0 without neighbours).

    Forward pass: with `neighbor_pass='batched'` (default) the samples and
    their neighbours go through the base model as one batch of
    `B * (1 + N)` rows (one call; a step costs about `1 + N` times the
    base step). With `'separate'`, as NSL 1.4, the samples and the
    neighbours are two calls; use it when the base model has
    BatchNormalization in training mode, whose batch statistics would
    otherwise mix samples, neighbours and zero padding.

    Args:
        base_model: the `keras.Model` to regularize.
        graph_reg_config: a `GraphRegConfig` (default `GraphRegConfig()`,
            whose `max_neighbors=0` disables the graph loss).
        embedding_layer: optional name of a layer of `base_model` (functional
            or Sequential with defined inputs) whose output is regularized
            instead of the final output. New in this version.
        neighbor_pass: 'batched' or 'separate' (see above). New in this
            version.
        **kwargs: `keras.Model` arguments (e.g. `name`).

    Raises:
        TypeError: `graph_reg_config` is not a `GraphRegConfig`.
        ValueError: unknown `neighbor_pass` or `embedding_layer`. When
            training or evaluating: labels inside the input dict instead of
            `y` (this wrapper has no `label_keys`); NaN, Inf or negative
            neighbour weights (eager; a compiled step raises when it runs,
            except TensorFlow with XLA, see
            `keras/layers/neighbor_features.py`).

    Example:
    >>> inputs = keras.Input((3,), name='words')
    >>> base_model = keras.Model(inputs,
    ...                          keras.layers.Dense(2, 'softmax')(inputs))
    >>> graph_config = nsl.configs.GraphRegConfig(
    ...     neighbor_config=nsl.configs.GraphNeighborConfig(max_neighbors=1))
    >>> graph_model = nsl.keras.GraphRegularization(base_model, graph_config)
    >>> graph_model.compile(optimizer='adam',
    ...                     loss=keras.losses.SparseCategoricalCrossentropy(),
    ...                     metrics=['accuracy'])
    >>> # 8 samples, each with one neighbour (features and edge weight).
    >>> x_train = {'words': np.random.rand(8, 3).astype('float32'),
    ...            'NL_nbr_0_words': np.random.rand(8, 3).astype('float32'),
    ...            'NL_nbr_0_weight': np.ones((8, 1), 'float32')}
    >>> y_train = np.random.randint(0, 2, size=8)
    >>> history = graph_model.fit(x_train, y_train, epochs=1, verbose=0)
    >>> sorted(history.history)
    ['accuracy', 'loss', 'scaled_graph_loss']
    >>> x_test = {'words': np.random.rand(4, 3).astype('float32')}
    >>> results = graph_model.evaluate(  # No neighbours needed.
    ...     x_test, np.random.randint(0, 2, size=4), verbose=0,
    ...     return_dict=True)
    >>> sorted(results)
    ['accuracy', 'loss', 'scaled_graph_loss']
    """

    def __init__(self, base_model, graph_reg_config=None, *,
                 embedding_layer=None, neighbor_pass="batched", **kwargs):
        kwargs.setdefault("name", "GraphRegularization")
        super().__init__(**kwargs)
        if not callable(base_model):
            raise TypeError(
                "`base_model` must be a Keras model or layer. Received: "
                f"{type(base_model).__name__}")
        if graph_reg_config is None:
            graph_reg_config = configs.GraphRegConfig()
        if not isinstance(graph_reg_config, configs.GraphRegConfig):
            raise TypeError(
                "`graph_reg_config` must be an nsl.configs.GraphRegConfig "
                "(e.g. from nsl.configs.make_graph_reg_config). Received: "
                f"{type(graph_reg_config).__name__}")
        if neighbor_pass not in _NEIGHBOR_PASSES:
            raise ValueError(
                f"`neighbor_pass` must be one of {list(_NEIGHBOR_PASSES)}. "
                f"Received: neighbor_pass={neighbor_pass!r}")
        self.base_model = base_model
        self.graph_reg_config = graph_reg_config
        self.embedding_layer = embedding_layer
        self.neighbor_pass = neighbor_pass
        self.nbr_features_layer = neighbor_features.NeighborFeatures(
            graph_reg_config.neighbor_config)
        self.regularizer = pairwise_distance.PairwiseDistance(
            graph_reg_config.distance_config, name="graph_loss")
        self._scaled_graph_loss = keras.metrics.Mean(name="scaled_graph_loss")
        self._state = _State()
        if embedding_layer is not None:
            self._state.forward_model = self._embedding_model(embedding_layer)
        if (neighbor_pass == "batched" and self._regularizes_at_all()
                and _has_batch_statistics(base_model)):
            warnings.warn(
                "The base model has BatchNormalization: with "
                "neighbor_pass='batched' its training-mode batch statistics "
                "are computed over samples and neighbours together "
                "(including zero padding). Pass neighbor_pass='separate' for "
                "NSL 1.4's behaviour (separate sample and neighbour calls).",
                stacklevel=2)
        if getattr(base_model, "built", False):
            self.built = True

    @property
    def neighbor_config(self):
        return self.graph_reg_config.neighbor_config

    def _embedding_model(self, layer_name):
        inputs = getattr(self.base_model, "inputs", None)
        outputs = getattr(self.base_model, "outputs", None)
        if not inputs or not outputs:
            raise ValueError(
                f"`embedding_layer={layer_name!r}` needs a functional or "
                "Sequential base model with defined inputs (e.g. built from "
                "keras.Input); this base model "
                f"({type(self.base_model).__name__}) has none. Regularize "
                "its output instead, or expose the embedding as an output.")
        try:
            layer = self.base_model.get_layer(layer_name)
        except ValueError:
            names = [lay.name for lay in self.base_model.layers]
            raise ValueError(
                f"`embedding_layer={layer_name!r}` is not a layer of the base "
                f"model. Its layers are: {names}.") from None
        structure = _base_model.input_structure(self.base_model)
        output = outputs[0] if len(outputs) == 1 else outputs
        return keras.Model(structure if structure is not None else inputs,
                           {"output": output, "embedding": layer.output},
                           name=f"{self.base_model.name}_with_{layer_name}")

    # -- Keras plumbing -----------------------------------------------------

    def build(self, input_shape=None):
        del input_shape  # The base model builds on its first call.
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(
            base_model=keras.saving.serialize_keras_object(self.base_model),
            graph_reg_config=self.graph_reg_config.get_config(),
            embedding_layer=self.embedding_layer,
            neighbor_pass=self.neighbor_pass)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["base_model"] = keras.saving.deserialize_keras_object(
            config["base_model"], custom_objects=custom_objects)
        config["graph_reg_config"] = configs.GraphRegConfig.from_config(
            config["graph_reg_config"])
        return cls(**config)

    def compile(self, optimizer="rmsprop", loss=None, metrics=None,
                **kwargs):
        """Configures the model for training, as `keras.Model.compile`.

        The base model is compiled with the same arguments too (its own
        optimizer and metric instances), so `base_model.evaluate` works, as
        in NSL 1.4.
        """
        _distribution.check_layout_map(self.base_model)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics,
                        **kwargs)
        base_kwargs = {k: v for k, v in kwargs.items()
                       if k in ("loss_weights", "weighted_metrics",
                                "run_eagerly", "jit_compile")}
        self.base_model.compile(
            optimizer=keras.optimizers.get(
                keras.optimizers.serialize(self.optimizer)),
            loss=loss, metrics=_clone_metrics(metrics), **base_kwargs)

    @property
    def metrics_names(self):
        """Names of the values `evaluate()` returns, in its order (Keras's
        own list names all compiled metrics `compile_metrics`)."""
        return _wrapper.metrics_names(self)

    def fit(self, x=None, y=None, batch_size=None, **kwargs):
        _distribution.check_batches(self, x, batch_size,
                                    kwargs.get("steps_per_epoch"))
        return super().fit(x, y, batch_size=batch_size, **kwargs)

    def compile_from_config(self, config):
        # Keras skips custom `compile()` methods when loading; this one is
        # safe to re-run (the base model is recompiled too).
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # -- Forward pass and losses --------------------------------------------

    def _regularizes_at_all(self):
        return (self.graph_reg_config.multiplier > 0
                and self.neighbor_config.max_neighbors > 0)

    def _has_neighbors(self, inputs):
        return (isinstance(inputs, dict) and self._regularizes_at_all()
                and any(k.startswith(self.neighbor_config.prefix)
                        for k in inputs))

    def _sample_features(self, inputs):
        if not isinstance(inputs, dict):
            return inputs
        return lib_neighbors.strip_neighbor_features(
            inputs, self.neighbor_config)

    def _input_names(self):
        structure = _base_model.input_structure(self.base_model)
        if structure is None:
            return None
        return [t.name for t in tree.flatten(structure)]

    def _forward(self, features, training):
        """Returns `(outputs, regularized tensor)` of the base model."""
        if self._state.forward_model is None:
            outputs = _base_model.call(self.base_model, features,
                                       training=training)
            flat = tree.flatten(outputs)
            if len(flat) != 1:
                raise ValueError(
                    f"The base model has {len(flat)} outputs; graph "
                    "regularization of the output needs exactly one. Pass "
                    "`embedding_layer=<layer name>` to regularize a shared "
                    "layer instead.")
            return outputs, flat[0]
        result = _base_model.call(self._state.forward_model, features,
                                  training=training)
        return result["output"], result["embedding"]

    def _unpack(self, inputs):
        names = self._input_names()
        if names is not None:
            missing = [n for n in names if n not in inputs]
            if missing:
                raise ValueError(
                    f"The base model has input(s) {missing}, which are not in "
                    f"the input dict (keys: {sorted(inputs)}). Name the "
                    "model's inputs like the features.")
            prefix = self.neighbor_config.prefix
            inputs = {k: v for k, v in inputs.items()
                      if k in names or k.startswith(prefix)}
        else:
            self._check_every_feature_has_neighbors(inputs)
        return lib_neighbors.unpack_neighbor_features(
            inputs, self.neighbor_config)

    def _check_every_feature_has_neighbors(self, inputs):
        """Without named model inputs every sample key needs neighbours: a
        key with none at all is most likely a label left in the dict."""
        config = self.neighbor_config
        lonely = sorted(
            k for k in inputs if not k.startswith(config.prefix)
            and naming.neighbor_feature_name(config, 0, k) not in inputs)
        if lonely:
            raise lib_neighbors.NeighborFeatureError(
                f"Input key(s) {lonely} have no neighbour copies (e.g. "
                f"{naming.neighbor_feature_name(config, 0, lonely[0])!r}). "
                "The base model has no named inputs, so every key without "
                f"the {config.prefix!r} prefix is taken as a sample feature. "
                "GraphRegularization takes the labels as `y` (e.g. "
                "`fit(x, y)`), not inside the input dict: pop labels from "
                "the dict. For other features, give the base model named "
                "inputs (keras.Input(name=...)) or add neighbour copies.")

    def _graph_pass(self, inputs, training, batched):
        """Returns `(outputs, graph_loss)` on a batch with neighbours."""
        sample, neighbors, weights = self._unpack(inputs)
        weights = neighbor_features.check_neighbor_weights(
            weights, self.neighbor_config)
        if batched:
            combined = {
                k: ops.concatenate(
                    [v, ops.cast(neighbors[k], ops.dtype(v))], axis=0)
                for k, v in sample.items()}
            outputs, regularized = self._forward(combined, training)
            batch = ops.shape(tree.flatten(sample)[0])[0]
            outputs = tree.map_structure(lambda t: t[:batch], outputs)
            sources, targets = regularized[:batch], regularized[batch:]
        else:
            outputs, sources = self._forward(sample, training)
            _, targets = self._forward(neighbors, training)
        weights = _expand_weights(ops.cast(weights, "float32"),
                                  len(targets.shape))
        graph_loss = self.regularizer(sources, targets, weights)
        return outputs, graph_loss

    def call(self, inputs, training=False):
        self._state.graph_pass = None
        if not self._has_neighbors(inputs):
            return _base_model.call(self.base_model,
                                    self._sample_features(inputs),
                                    training=training)
        outputs, graph_loss = self._graph_pass(
            inputs, training, batched=self.neighbor_pass == "batched")
        self._state.graph_pass = (outputs, graph_loss)
        return outputs

    def _require_labels(self, x, y):
        """Raises a clear error for labels left inside the input dict."""
        if y is not None or getattr(self, "_compile_loss", None) is None:
            return
        if not isinstance(x, dict):
            return
        names = self._input_names()
        prefix = self.neighbor_config.prefix
        extra = sorted(k for k in x if not k.startswith(prefix)
                       and (names is None or k not in names))
        raise ValueError(
            "GraphRegularization takes the labels as `y` (e.g. `fit(x, y)`, "
            "or a dataset of `(x, y)` tuples, as nsl.keras."
            "NeighborBatchDataset makes), not inside the input dict: it has "
            "no `label_keys` (unlike AdversarialRegularization). The model "
            "was compiled with a loss but received no `y`. "
            + (f"Input keys that are not model inputs or neighbour features: "
               f"{extra}." if names is not None else
               f"Input keys without the neighbour prefix: {extra}.")
            + " Pop the labels from the dict and pass them as `y`.")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        self._require_labels(x, y)
        graph_pass, self._state.graph_pass = self._state.graph_pass, None
        total = super().compute_loss(x=x, y=y, y_pred=y_pred,
                                     sample_weight=sample_weight,
                                     training=training)
        if graph_pass is not None and graph_pass[0] is y_pred:
            graph_loss = graph_pass[1]  # Recorded by call() for this y_pred.
        elif self._has_neighbors(x):  # E.g. Keras's symbolic build.
            _, graph_loss = self._graph_pass(x, training, batched=False)
        else:
            graph_loss = None
        if graph_loss is None:
            scaled = ops.zeros((), dtype="float32")
        else:
            scaled = self.graph_reg_config.multiplier * ops.cast(
                graph_loss, "float32")
        self._scaled_graph_loss.update_state(scaled)
        # Per replica under tf.distribute: divide by the replica count, as
        # Keras does for its own losses (a no-op elsewhere).
        scaled = _distribution.scale(scaled)
        if total is None:
            return scaled
        return total + ops.cast(scaled, total.dtype)


def _clone_metrics(metrics):
    """Fresh metric instances (strings and functions are kept)."""

    def clone(metric):
        if isinstance(metric, keras.metrics.Metric):
            return type(metric).from_config(metric.get_config())
        return metric

    if metrics is None:
        return None
    return tree.map_structure(clone, metrics)
