"""The graph regularization term.

    term = multiplier * reduce_{i, j} w_ij * d(h(x_i), h(x_ij))

(or, with `graph_reg_config.contrastive_config`, `multiplier` times the
InfoNCE loss of `nsl.lib.neighbor_info_nce`, the batch's other samples as
negatives; with `graph_reg_config.propagation_config`, `multiplier` times
the labeled loss of the neighbourhood's averaged prediction plus its
distillation into the model, `nsl.configs.PropagationConfig`)

where `x_ij` is the `j`-th neighbour of sample `i` (at most `max_neighbors`),
`w_ij` its edge weight (0 for padding), `h` the regularized tensor (the base
model's output, or a named intermediate layer) and `d`/`reduce` the distance
and reduction of `DistanceConfig` (`nsl.lib.pairwise_distance_wrapper`).

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
from neural_structured_learning.keras.layers import neighbor_features
from neural_structured_learning.keras.layers import pairwise_distance
from neural_structured_learning.keras.terms import _term
from neural_structured_learning.lib import contrastive as contrastive_lib
from neural_structured_learning.lib import distances
from neural_structured_learning.lib import neighbors as lib_neighbors
from neural_structured_learning.lib import propagation as propagation_lib

NEIGHBOR_PASSES = ("batched", "separate")


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


@keras.saving.register_keras_serializable(package="neural_structured_learning")
class GraphTerm(_term.Term):
    """`multiplier * graph_loss` over packed neighbours (module docstring).

    Input: the batch dict holds each sample feature `name`, its neighbour
    copies `{prefix}{i}_{name}` and weights `{prefix}{i}{weight_suffix}`
    (`[B, 1]` or `[B]`) for `i < max_neighbors` (NSL 1.4's packed format).
    The term takes every key with the prefix out of the dict; a batch
    without them gets no graph loss (reported as 0), so `evaluate` and
    `predict` need no neighbours. When the base model has named inputs, only
    those features need neighbour copies.

    Forward pass: with `neighbor_pass='batched'` (default) the neighbours run
    through the base model in the clean pass, as extra rows (one call).
    With `'separate'`, as NSL 1.4, they are a second call; use it when the
    base model has BatchNormalization in training mode, whose batch
    statistics would otherwise mix samples, neighbours and zero padding.

    Args:
        graph_reg_config: a `GraphRegConfig` (default `GraphRegConfig()`,
            whose `max_neighbors=0` disables the term).
        embedding_layer: optional name of a layer of the base model
            (functional, or Sequential with defined inputs) whose output is
            regularized instead of the final output.
        neighbor_pass: 'batched' or 'separate'.
        name: the metric name.
    """

    metric_attribute = "_scaled_graph_loss"
    _CONFIGS = {"graph_reg_config": configs.GraphRegConfig}

    def __init__(self, graph_reg_config=None, embedding_layer=None,
                 neighbor_pass="batched", name="scaled_graph_loss"):
        if graph_reg_config is None:
            graph_reg_config = configs.GraphRegConfig()
        if not isinstance(graph_reg_config, configs.GraphRegConfig):
            raise TypeError(
                "`graph_reg_config` must be an nsl.configs.GraphRegConfig "
                "(e.g. from nsl.configs.make_graph_reg_config). Received: "
                f"{type(graph_reg_config).__name__}")
        if neighbor_pass not in NEIGHBOR_PASSES:
            raise ValueError(
                f"`neighbor_pass` must be one of {list(NEIGHBOR_PASSES)}. "
                f"Received: neighbor_pass={neighbor_pass!r}")
        if (graph_reg_config.propagation_config is not None
                and embedding_layer is not None):
            raise ValueError(
                "`propagation_config` averages and distils the base model's "
                "predictions; it cannot regularize `embedding_layer` "
                f"{embedding_layer!r}. Pass embedding_layer=None.")
        self.graph_reg_config = graph_reg_config
        self.embedding_layer = embedding_layer
        self.regularized_layer = embedding_layer
        self.neighbor_pass = neighbor_pass
        self.name = name

    @property
    def neighbor_config(self):
        return self.graph_reg_config.neighbor_config

    def get_config(self):
        return {"graph_reg_config": self.graph_reg_config.get_config(),
                "embedding_layer": self.embedding_layer,
                "neighbor_pass": self.neighbor_pass, "name": self.name}

    def regularizes(self):
        return (self.graph_reg_config.multiplier > 0
                and self.neighbor_config.max_neighbors > 0)

    def check_base_model(self, model):
        outputs = getattr(model.base_model, "outputs", None)
        if self.regularizes() and self.embedding_layer is None and outputs:
            self._regularized({"output": outputs})
        if (self.neighbor_pass == "batched" and self.regularizes()
                and _has_batch_statistics(model.base_model)):
            warnings.warn(
                "The base model has BatchNormalization: with "
                "neighbor_pass='batched' its training-mode batch statistics "
                "are computed over samples and neighbours together "
                "(including zero padding). Pass neighbor_pass='separate' for "
                "NSL 1.4's behaviour (separate sample and neighbour calls).",
                stacklevel=4)

    # -- The batch ----------------------------------------------------------

    def strip(self, features):
        return lib_neighbors.strip_neighbor_features(features,
                                                     self.neighbor_config)

    def take_inputs(self, model, features):
        prefix = self.neighbor_config.prefix
        if not any(k.startswith(prefix) for k in features):
            return features, None
        sample = self.strip(features)
        if not self.regularizes():
            return sample, None
        names = _base_model.input_names(model.base_model)
        if names is not None:
            missing = [n for n in names if n not in sample]
            if missing:
                raise ValueError(
                    f"The base model has input(s) {missing}, which are not in "
                    f"the input dict (keys: {sorted(features)}). Name the "
                    "model's inputs like the features.")
            packed = {k: v for k, v in features.items()
                      if k in names or k.startswith(prefix)}
        else:
            self._check_every_feature_has_neighbors(features)
            packed = features
        _, nbrs, weights = lib_neighbors.unpack_neighbor_features(
            packed, self.neighbor_config)
        weights = neighbor_features.check_neighbor_weights(
            weights, self.neighbor_config)
        return sample, (nbrs, weights)

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

    def extra_rows(self, model, taken, training):
        if taken is None or self.neighbor_pass != "batched":
            return None
        return taken[0]

    # -- The loss -----------------------------------------------------------

    def _regularized(self, result):
        if self.embedding_layer is not None:
            return result[self.embedding_layer]
        flat = tree.flatten(result["output"])
        if len(flat) != 1:
            raise ValueError(
                f"The base model has {len(flat)} outputs; graph "
                "regularization of the output needs exactly one. Pass "
                "`embedding_layer=<layer name>` to regularize a shared "
                "layer instead.")
        return flat[0]

    def loss(self, model, step, index, training):
        taken = step.batch.term_inputs[index]
        if taken is None:
            return None
        nbrs, weights = taken
        if self.embedding_layer is None:
            sources = self._regularized({"output": step.outputs})
        elif self.embedding_layer in step.activations:
            sources = step.activations[self.embedding_layer]
        else:  # compute_loss without call: a fresh clean pass.
            sources = self._regularized(model.run_with_activations(
                step.batch.features, training))
        if step.extra[index] is not None:
            targets = self._regularized(step.extra[index])
        else:
            targets = self._regularized(model.run_with_activations(
                nbrs, training))
        weights = _expand_weights(ops.cast(weights, "float32"),
                                  len(targets.shape))
        if self.graph_reg_config.propagation_config is not None:
            return self.graph_reg_config.multiplier * self._propagation_loss(
                model, step.batch, sources, targets, weights)
        contrastive = self.graph_reg_config.contrastive_config
        if contrastive is not None:
            graph_loss = contrastive_lib.neighbor_info_nce(
                sources, targets, weights, contrastive.temperature)
            return self.graph_reg_config.multiplier * graph_loss
        targets = ops.cast(targets, "float32")
        sources = pairwise_distance.replicate_sources(
            ops.cast(sources, "float32"), targets)
        graph_loss = distances.pairwise_distance_wrapper(
            sources, targets, weights,
            distance_config=self.graph_reg_config.distance_config)
        return self.graph_reg_config.multiplier * ops.cast(graph_loss,
                                                           "float32")

    def _propagation_loss(self, model, batch, sources, targets, weights):
        """`labeled_loss(y, z) + KL(q || p)` (`PropagationConfig`)."""
        config = self.graph_reg_config.propagation_config
        prediction = propagation_lib.neighborhood_prediction(
            sources, targets, weights, config.self_weight)
        labeled = model.labeled_loss(batch, ops.cast(prediction,
                                                     sources.dtype))
        distilled = propagation_lib.distillation_loss(
            prediction, sources, model.loss_from_logits(), config.temperature)
        return ops.cast(labeled, "float32") + distilled
