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
Keras model, on TensorFlow, JAX and PyTorch. The term itself is
`nsl.keras.terms.GraphTerm`.

Reference: Bui et al., 2018, "Neural Graph Learning: Training Neural Networks
Using Graphs", https://research.google/pubs/pub46568/
"""

import keras

from neural_structured_learning.configs import configs
from neural_structured_learning.keras import _base_model
from neural_structured_learning.keras import regularized_model
from neural_structured_learning.keras.layers import neighbor_features
from neural_structured_learning.keras.layers import pairwise_distance
from neural_structured_learning.keras.terms import graph

_PACKAGE = "neural_structured_learning"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GraphRegularization(regularized_model.RegularizedModel):
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

    This is a `RegularizedModel` with one `nsl.keras.terms.GraphTerm`.

    Metrics: `loss` (the total), the compiled metrics (named as Keras and
    NSL 1.4's `GraphRegularization` name them: 'accuracy' stays
    `accuracy`), and `scaled_graph_loss` (`multiplier * graph_loss`, 0
    without neighbours).

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
        unlabeled_label: label value that marks unlabeled rows (e.g. -1,
            as `NeighborBatchDataset(..., seeds='all', unlabeled_label=-1)`
            yields them), or None (every row is labeled). With it, the
            labeled loss and the compiled metrics use labeled rows only and
            the graph loss every row. New in this version.
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

    _KERAS_OUTPUT_NAMES = True
    _CONFIGS = {"graph_reg_config": configs.GraphRegConfig}

    def __init__(self, base_model, graph_reg_config=None, *,
                 embedding_layer=None, neighbor_pass="batched",
                 unlabeled_label=None, **kwargs):
        kwargs.setdefault("name", "GraphRegularization")
        term = graph.GraphTerm(graph_reg_config, embedding_layer,
                               neighbor_pass)
        super().__init__(base_model, terms=[term],
                         unlabeled_label=unlabeled_label, **kwargs)
        self.graph_reg_config = term.graph_reg_config
        self.embedding_layer = embedding_layer
        self.neighbor_pass = neighbor_pass
        # NSL 1.4's attributes.
        self.nbr_features_layer = neighbor_features.NeighborFeatures(
            term.neighbor_config)
        self.regularizer = pairwise_distance.PairwiseDistance(
            term.graph_reg_config.distance_config, name="graph_loss")

    @property
    def neighbor_config(self):
        return self.graph_reg_config.neighbor_config

    def get_config(self):
        config = super().get_config()
        for key in ("label_keys", "sample_weight_key",
                    "base_with_labels_in_features", "seed"):
            config.pop(key)
        config.update(
            graph_reg_config=self.graph_reg_config.get_config(),
            embedding_layer=self.embedding_layer,
            neighbor_pass=self.neighbor_pass,
            unlabeled_label=self.unlabeled_label)
        return config

    def missing_labels_message(self, x):
        if not isinstance(x, dict):
            return super().missing_labels_message(x)
        names = _base_model.input_names(self.base_model)
        prefix = self.neighbor_config.prefix
        extra = sorted(k for k in x if not k.startswith(prefix)
                       and (names is None or k not in names))
        return (
            "GraphRegularization takes the labels as `y` (e.g. `fit(x, y)`, "
            "or a dataset of `(x, y)` tuples, as nsl.keras."
            "NeighborBatchDataset makes), not inside the input dict: it has "
            "no `label_keys` (unlike AdversarialRegularization). The model "
            "was compiled with a loss but received no `y`. "
            + (f"Input keys that are not model inputs or neighbour features: "
               f"{extra}." if names is not None else
               f"Input keys without the neighbour prefix: {extra}.")
            + " Pop the labels from the dict and pass them as `y`.")
