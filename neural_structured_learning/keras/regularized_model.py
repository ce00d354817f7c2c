"""A base model trained on its labels plus regularization terms.

`RegularizedModel` is the one base of the wrappers. It trains `base_model`
(`f`) on

    loss = labeled_loss(y, f(x)) + sum_t term_t

where each term (`nsl.keras.terms`: adversarial, virtual adversarial,
entropy, graph) adds a scalar already multiplied by its own multiplier, and
is reported as a metric under its name (e.g. `scaled_adversarial_loss`).
`AdversarialRegularization`, `VirtualAdversarialRegularization` and
`GraphRegularization` are this class with one term (two for VAT with entropy
minimisation) and NSL 1.4's constructors; terms combine in one model:

    model = nsl.keras.RegularizedModel(base_model, terms=[
        nsl.keras.terms.GraphTerm(graph_reg_config),
        nsl.keras.terms.AdversarialTerm(adv_config)])

One training step runs Keras's own hooks in order, on every backend:

1. `call(x)` parses the batch once into a `Batch` (`_batch.py`: features
   for the base model, labels and sample weights found in the input dict,
   each term's own inputs such as packed neighbours) and runs the clean
   forward pass: the
   batch plus any rows a term asks for (graph neighbours, batched), the
   activations of the layers terms regularize, and, when a term asks, a
   recording of the pass for input gradients. The result is a `Step`.
2. `compute_loss(x, y, y_pred, sample_weight)` completes the batch with
   Keras's `y` and `sample_weight`, computes the labeled loss (on labeled
   rows only when the model marks unlabeled rows) and each term's loss from
   the `Step`.
3. `compute_metrics(...)` updates the compiled metrics on the same batch.

The `Step` goes from one hook to the next through a per-thread slot (each
replica of `tf.distribute.MirroredStrategy` runs in its own thread) that
each hook empties: nothing is matched by object identity, and
`compute_loss` called on its own (a custom loop) parses `x` itself and runs
every term from `y_pred`, with the same result, only without the reuse.
"""

import copy
import dataclasses
import threading

import keras
from keras import ops
from keras import tree

from neural_structured_learning import _internals
from neural_structured_learning.keras import _base_model
from neural_structured_learning.keras import _batch
from neural_structured_learning.keras import _distribution
from neural_structured_learning.keras import _wrapper
from neural_structured_learning.keras.terms import _term
from neural_structured_learning.lib import adversarial_neighbor
from neural_structured_learning.lib import gradients

PACKAGE = "neural_structured_learning"


@dataclasses.dataclass
class Step:
    """The clean forward pass of one batch, shared by the loss terms.

    Attributes:
        batch: the `_batch.Batch`.
        outputs: the base model's outputs on the batch rows.
        activations: `{layer name: activations}` of the batch rows for the
            layers that terms regularize.
        extra: per term, `{'output': ..., layer name: ...}` of the rows the
            term added to the pass (e.g. neighbours), or None.
        loss_gradients: from a recorded pass
            (`nsl.lib.gradients.forward_with_loss_gradients`), or None.
        recorded_keys: the perturbable features the recording watched.
        fused_variables: weights whose gradient the recording computes.
        input_gradients: `{feature key: d labeled_loss / d feature}` from
            the recording, set by `compute_loss` (None without one).
        rows: the batch size when terms added rows to the pass (which
            then come after the batch's rows), else None.
    """

    batch: _batch.Batch
    outputs: object
    activations: dict = dataclasses.field(default_factory=dict)
    extra: list = dataclasses.field(default_factory=list)
    loss_gradients: object = None
    recorded_keys: list = dataclasses.field(default_factory=list)
    fused_variables: list = dataclasses.field(default_factory=list)
    input_gradients: dict = None
    rows: object = None

    def batch_rows(self, structure):
        """The batch's rows of a tensor (structure) of the recorded pass."""
        if self.rows is None:
            return structure
        return tree.map_structure(lambda t: t[:self.rows], structure)


class _Slot(threading.local):
    """What one Keras hook leaves for the next, per thread."""

    step = None
    batch = None

    def __reduce__(self):  # Deep copies and pickles get an empty slot.
        return (_Slot, ())


class _Parts:
    """Plain per-model state kept out of Keras's attribute tracking."""

    def __init__(self, terms):
        self.terms = tuple(terms)
        self.metric_attributes = []
        self.losses = None  # [(name, keras.losses.Loss, weight)] per output.
        self.compile_args = None
        self.metric_names = []  # Compiled metrics, in Keras's result order.
        self.activation_model = None  # Base model + regularized layers.


@keras.saving.register_keras_serializable(package=PACKAGE)
class RegularizedModel(keras.Model):
    """A base model trained with any number of regularization terms.

    See the module docstring. Metrics: `loss` (the total), each output's
    labeled loss under the loss's name (e.g.
    `sparse_categorical_crossentropy`), the compiled metrics (named as Keras
    names them, in every wrapper: `'accuracy'` is `accuracy`), then each
    term's metric (e.g. `scaled_graph_loss`, `scaled_adversarial_loss`).

    Args:
        base_model: the `keras.Model` (or layer) to regularize.
        terms: the regularization terms (`nsl.keras.terms`), in the order
            their metrics are reported.
        label_keys: keys of the labels in the input dict, one per output
            (NSL 1.4's dict input); empty (default): the labels come as
            Keras's `y`.
        sample_weight_key: optional key of the sample weights in the input
            dict.
        label_mask_key: optional key of a 0/1 labeled-row mask (`[batch]`
            or `[batch, 1]`) in the input dict.
        unlabeled_label: label value that marks unlabeled rows (integer
            labels: any entry; float labels: every entry), or None. When
            rows can be unlabeled (this, `label_mask_key`, or a term that
            learns from unlabeled rows), the labeled loss and the compiled
            metrics use labeled rows only.
        base_with_labels_in_features: pass the labels in the feature dict to
            the base model too (for models that read them).
        seed: seed of the terms' random draws.
        **kwargs: passed to `keras.Model` (e.g. `name`).
    """

    # GraphRegularization reports losses and outputs as Keras does (no
    # labeled-loss metric for one output; `{output}_` prefixes), as 1.4's.
    _KERAS_OUTPUT_NAMES = False
    # AdversarialRegularization also reports metrics under 1.4's names.
    _NSL14_METRIC_ALIASES = False
    # Arguments holding `nsl.configs` objects, rebuilt by `from_config`.
    _CONFIGS = {}

    def __init__(self, base_model, terms=(), label_keys=(),
                 sample_weight_key=None, label_mask_key=None,
                 unlabeled_label=None, base_with_labels_in_features=False,
                 seed=None, **kwargs):
        kwargs.setdefault("name", "RegularizedModel")
        super().__init__(**kwargs)
        if not callable(base_model):
            raise TypeError(
                "`base_model` must be a Keras model or layer. Received: "
                f"{type(base_model).__name__}")
        if isinstance(label_keys, str):
            label_keys = (label_keys,)
        terms = list(terms)
        for term in terms:
            if not isinstance(term, _term.Term):
                raise TypeError(
                    "`terms` must hold nsl.keras.terms objects (e.g. "
                    "AdversarialTerm, GraphTerm). Received: "
                    f"{type(term).__name__}")
        names = [term.name for term in terms]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"Two terms report the same metric {duplicates}: give them "
                "different `name`s.")
        self.base_model = base_model
        self.label_keys = tuple(label_keys)
        self.sample_weight_key = sample_weight_key
        self.label_mask_key = label_mask_key
        self.unlabeled_label = unlabeled_label
        self.base_with_labels_in_features = bool(base_with_labels_in_features)
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed)
        self._parts = _Parts(terms)
        self._slot = _Slot()
        for term in terms:  # Tracked by Keras, in the terms' order.
            attribute = term.metric_attribute
            if attribute is None or attribute in self._parts.metric_attributes:
                attribute = f"_{term.name}_metric"
            setattr(self, attribute, keras.metrics.Mean(name=term.name))
            self._parts.metric_attributes.append(attribute)
        layers = sorted({term.regularized_layer for term in terms
                         if term.regularized_layer is not None})
        if layers:
            self._parts.activation_model = self._activation_model(layers)
        for term in terms:
            term.check_base_model(self)
        if getattr(base_model, "built", False):
            self.built = True

    @property
    def terms(self):
        """The regularization terms, in the order of their metrics."""
        return self._parts.terms

    @property
    def seed_generator(self):
        """The `keras.random.SeedGenerator` of the terms' random draws."""
        return self._seed_generator

    def _activation_model(self, layer_names):
        """The base model with the regularized layers as extra outputs."""
        inputs = getattr(self.base_model, "inputs", None)
        outputs = getattr(self.base_model, "outputs", None)
        if not inputs or not outputs:
            raise ValueError(
                f"Regularizing layer(s) {layer_names} needs a functional or "
                "Sequential base model with defined inputs (e.g. built from "
                "keras.Input); this base model "
                f"({type(self.base_model).__name__}) has none. Regularize "
                "its output instead, or expose the layer as an output.")
        found = {}
        for name in layer_names:
            try:
                found[name] = self.base_model.get_layer(name).output
            except ValueError:
                names = [layer.name for layer in self.base_model.layers]
                raise ValueError(
                    f"`embedding_layer={name!r}` is not a layer of the base "
                    f"model. Its layers are: {names}.") from None
        structure = _base_model.input_structure(self.base_model)
        output = outputs[0] if len(outputs) == 1 else outputs
        return keras.Model(structure if structure is not None else inputs,
                           {"output": output, **found},
                           name=f"{self.base_model.name}_activations")

    # -- Keras plumbing -----------------------------------------------------

    def build(self, input_shape=None):
        # A base model without a `build` of its own builds on its first call
        # (Keras's default `build` would only warn).
        own_build = type(self.base_model).build not in (
            keras.Model.build, keras.layers.Layer.build)
        if not self.base_model.built and input_shape is not None and (
                own_build):
            if isinstance(input_shape, dict):
                input_shape = self._parse(input_shape, shapes=True).features
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
        if type(self) is RegularizedModel:
            config.update(
                terms=[keras.saving.serialize_keras_object(t)
                       for t in self.terms],
                label_mask_key=self.label_mask_key,
                unlabeled_label=self.unlabeled_label)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # A copy: Keras's deserialization consumes the nested configs.
        config = copy.deepcopy(config)
        config["base_model"] = keras.saving.deserialize_keras_object(
            config["base_model"], custom_objects=custom_objects)
        if "terms" in config:
            config["terms"] = [
                keras.saving.deserialize_keras_object(
                    t, custom_objects=custom_objects)
                for t in config["terms"]]
        return cls(**_term.configs_from_dicts(config, cls._CONFIGS))

    def compile(self, optimizer="rmsprop", loss=None, metrics=None,
                loss_weights=None, weighted_metrics=None, **kwargs):
        """Configures the model for training, as `keras.Model.compile`.

        `loss` may be a loss name, function or `keras.losses.Loss`, a list
        (one per output) or a dict keyed by output name; `loss_weights` a
        list or dict. `metrics` is a list (applied to every output) or a list
        of lists / dict (per output). The base model is compiled too (its
        own optimizer and metric instances), so `base_model.evaluate` works.
        """
        if loss is None:
            raise ValueError(
                "`loss` is required: the wrapper trains the base model on its "
                "labeled loss plus the regularization.")
        _distribution.check_layout_map(self.base_model)
        self._parts.compile_args = dict(
            optimizer=optimizer, loss=loss, metrics=metrics,
            loss_weights=loss_weights, weighted_metrics=weighted_metrics,
            **kwargs)
        output_names = self._output_names()
        losses = _wrapper.per_output(loss, output_names, "loss")
        if loss_weights is None:
            weights = [1.0] * len(output_names)
        elif isinstance(loss_weights, (list, tuple, dict)):
            weights = _wrapper.per_output(loss_weights, output_names,
                                          "loss_weights")
            if isinstance(loss_weights, (list, tuple)) and len(
                    loss_weights) != len(output_names):
                raise ValueError(
                    f"`loss_weights` has {len(loss_weights)} entries but the "
                    f"model has {len(output_names)} outputs.")
        else:
            raise TypeError(
                "`loss_weights` must be a list or a dict. Received: "
                f"{type(loss_weights).__name__}")
        namer = self._namer(output_names)
        loss_objects = [_wrapper.get_loss(spec) for spec in losses]
        self._parts.losses = [
            (namer(_wrapper.name_of(obj), i), obj, float(w))
            for i, (obj, w) in enumerate(zip(loss_objects, weights))]

        # Per output: the labeled loss (with sample weights, as 1.4), the
        # metrics (unweighted, as Keras) and the weighted metrics, all handed
        # to Keras as weighted metrics so that they are reported in this
        # order (NSL 1.4's). When rows can be unlabeled every metric is
        # weighted by the label mask.
        on_labeled_rows = self.marks_unlabeled_rows()
        per_output = _wrapper.metrics_per_output(metrics, output_names)
        per_output_weighted = _wrapper.metrics_per_output(weighted_metrics,
                                                          output_names)
        weighted = []
        for i, (name, loss_obj, _) in enumerate(self._parts.losses):
            plain = self._metrics_named(per_output[i], loss_obj, namer, i)
            if not on_labeled_rows:
                plain = [_wrapper.IgnoringSampleWeight(m) for m in plain]
            resolved = plain + self._metrics_named(per_output_weighted[i],
                                                   loss_obj, namer, i)
            if not self._KERAS_OUTPUT_NAMES or len(output_names) > 1:
                if self._KERAS_OUTPUT_NAMES:  # Keras: `{output}_loss`.
                    name = f"{output_names[i]}_loss"
                resolved.insert(0, _wrapper.LossMetric(
                    loss_obj, name=name, mean_over_weights=on_labeled_rows))
            weighted.append(resolved)
        self._parts.metric_names = [m.name for ms in weighted for m in ms]
        if len(weighted) == 1:
            weighted = weighted[0]
        super().compile(optimizer=optimizer, weighted_metrics=weighted,
                        **kwargs)
        # The base model is compiled too, for `base_model.evaluate`, with
        # the wrapper's optimizer itself: the one that trains its weights, so
        # a saved base model holds that optimizer's state and loads without
        # "Skipping variable loading for optimizer" (a second optimizer,
        # never built, would be saved empty).
        self.base_model.compile(
            optimizer=self.optimizer,
            loss=loss, loss_weights=loss_weights,
            metrics=_wrapper.clone_metrics(
                metrics if not isinstance(metrics, dict) else None),
            **{k: v for k, v in kwargs.items()
               if k in ("run_eagerly", "jit_compile")})

    def _metrics_named(self, specs, loss_obj, namer, output_index):
        """The compiled metrics of one output, named by the one rule.

        Keras's rule for every wrapper: a metric given as a string keeps that
        string (`'accuracy'` is `accuracy`), an object its `name`. Where NSL
        1.4's wrapper reported another name for the same metric (its
        `AdversarialRegularization`: `sparse_categorical_accuracy`,
        `mean_squared_error` for `'MSE'`), that name is reported too, right
        after it (`_NSL14_METRIC_ALIASES`), so 1.4 code reading it works.
        """
        metrics = []
        for spec in specs:
            metric = _wrapper.resolve_metric(spec, loss_obj)
            nsl14_name = _wrapper.name_of(metric)
            keras_name = spec if isinstance(spec, str) else nsl14_name
            metric.name = namer(keras_name, output_index)
            metrics.append(metric)
            if self._NSL14_METRIC_ALIASES and nsl14_name != keras_name:
                alias = _wrapper.resolve_metric(spec, loss_obj)
                alias.name = namer(nsl14_name, output_index)
                metrics.append(alias)
        return metrics

    def _namer(self, output_names):
        n = len(output_names)
        if n == 1:
            return _wrapper.Namer([""], [""])
        if self._KERAS_OUTPUT_NAMES:
            return _wrapper.Namer([f"{name}_" for name in output_names],
                                  [""] * n)
        keys = (self.label_keys if len(self.label_keys) == n
                else output_names)
        return _wrapper.Namer([""] * n, [f"_{k}" for k in keys])

    @property
    def metrics_names(self):
        """Names of the values `evaluate()` returns, in its order.

        As NSL 1.4: `loss`, each output's labeled loss and metrics, then the
        regularization terms (e.g. `scaled_adversarial_loss`). Keras's own
        list names the compiled metrics' container `compile_metrics`
        instead, so `dict(zip(model.metrics_names, model.evaluate(...)))`
        would mislabel the values.
        """
        return _wrapper.metrics_names(self, self._parts.metric_names)

    def fit(self, x=None, y=None, batch_size=None, **kwargs):
        _distribution.check_batches(self, x, batch_size,
                                    kwargs.get("steps_per_epoch"))
        x, y = self._labels_beside_sample_weight(x, y, kwargs)
        with _wrapper.nonfinite_gradient_errors_first():
            return super().fit(x, y, batch_size=batch_size, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        _distribution.check_batches(self, x, batch_size,
                                    kwargs.get("steps"))
        x, y = self._labels_beside_sample_weight(x, y, kwargs)
        with _wrapper.nonfinite_gradient_errors_first():
            return super().evaluate(x, y, batch_size=batch_size, **kwargs)

    def train_on_batch(self, *args, **kwargs):
        with _wrapper.nonfinite_gradient_errors_first():
            return super().train_on_batch(*args, **kwargs)

    def test_on_batch(self, *args, **kwargs):
        with _wrapper.nonfinite_gradient_errors_first():
            return super().test_on_batch(*args, **kwargs)

    def _labels_beside_sample_weight(self, x, y, kwargs):
        """Moves labels out of an input dict when `sample_weight` is given.

        Keras drops `sample_weight` (and `class_weight`) without a word when
        `y` is None, which is always the case with NSL 1.4's dict input
        (`fit({'feature': x, 'label': y}, sample_weight=w)`). The labels are
        handed to Keras as `y` instead, so the weights are used.
        """
        if (y is not None or not isinstance(x, dict) or not self.label_keys
                or all(kwargs.get(k) is None
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

    def get_compile_config(self):
        if self._parts.compile_args is None:
            return {}
        return keras.saving.serialize_keras_object(self._parts.compile_args)

    def compile_from_config(self, config):
        # Keras skips custom `compile()` methods when loading; this one is
        # safe to re-run (the base model is recompiled too).
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _output_names(self):
        names = getattr(self.base_model, "output_names", None)
        outputs = getattr(self.base_model, "outputs", None)
        if names and outputs and len(names) == len(tree.flatten(outputs)):
            return list(names)
        return [f"output_{i + 1}"
                for i in range(max(1, len(self.label_keys)))]

    # -- Parsing the batch --------------------------------------------------

    def _parse(self, x, shapes=False):
        """The `Batch` of an input (labels from the dict only)."""
        return _batch.parse(self, x, shapes=shapes)

    def _complete(self, batch, x, y, sample_weight, y_pred=None):
        """Adds Keras's `y`/`sample_weight` and the label mask to `batch`."""
        _batch.complete(self, batch, x, y, sample_weight, y_pred)

    def missing_labels_message(self, x):
        """The error message for a batch without labels."""
        keys = sorted(x) if isinstance(x, dict) else None
        return (f"Labels are not in the input: expected key(s) "
                f"{list(self.label_keys)} in the input dict"
                + (f" (found keys {keys})" if keys is not None else "")
                + ", or labels passed as `y`. To predict without labels, "
                "use `predict` or the base model.")

    def marks_unlabeled_rows(self):
        """Whether rows can be unlabeled (then losses and metrics of labels
        cover labeled rows only)."""
        return (self.label_mask_key is not None
                or self.unlabeled_label is not None
                or any(term.uses_unlabeled_rows for term in self.terms))

    # -- The forward pass ---------------------------------------------------

    def run_base(self, features, training):
        """The base model's outputs on `features` (a parsed feature dict)."""
        return _base_model.call(self.base_model, features, training=training)

    def run_with_activations(self, features, training):
        """`{'output': outputs, layer: activations}` for regularized layers."""
        model = self._parts.activation_model
        if model is None:
            return {"output": self.run_base(features, training)}
        return _base_model.call(model, features, training=training)

    def call(self, inputs, training=False):
        step = self._forward(self._parse(inputs), training)
        self._slot.step = step
        return step.outputs

    def _forward(self, batch, training):
        features = batch.features
        rows = [term.extra_rows(self, batch.term_inputs[i], training)
                for i, term in enumerate(self.terms)]
        added = [r for r in rows if r is not None]
        if added:  # Keys without extra rows are not base-model inputs.
            features = {k: ops.concatenate(
                [v] + [ops.cast(r[k], ops.dtype(v)) for r in added], axis=0)
                for k, v in features.items() if all(k in r for r in added)}
        step = Step(batch=batch, outputs=None, extra=[None] * len(rows))
        if added:
            step.rows = ops.shape(tree.flatten(batch.features)[0])[0]
        recording = any(term.wants_recording(self, training)
                        for term in self.terms)
        keys, x0 = [], []
        if recording and self._parts.losses is not None:
            keys, x0, _ = adversarial_neighbor.split_perturbable(features)
        if x0:
            keyed, rebuild = adversarial_neighbor.keyed_view(features)

            def forward(xs):
                return self.run_with_activations(
                    rebuild({**keyed, **dict(zip(keys, xs))}), training)

            step.fused_variables = self._fused_variables(training)
            result, step.loss_gradients = (
                gradients.forward_with_loss_gradients(
                    forward, x0, step.fused_variables))
            step.recorded_keys = keys
        else:
            result = self.run_with_activations(features, training)
        if added:
            size = step.rows
            start = size
            for i, r in enumerate(rows):
                if r is None:
                    continue
                count = ops.shape(tree.flatten(r)[0])[0]
                step.extra[i] = tree.map_structure(
                    lambda t, a=start, b=start + count: t[a:b], result)
                start = start + count
            result = tree.map_structure(lambda t: t[:size], result)
        step.outputs = result["output"]
        step.activations = {k: v for k, v in result.items() if k != "output"}
        return step

    def _fused_variables(self, training):
        """Weights whose gradient the recorded clean pass computes itself.

        Only when every term leaves the clean outputs' gradient to the
        labeled loss (adversarial terms; VAT treats them as constants) and
        asks for it: the recorded pass reads the weights as constants. Not
        under a float16 compute dtype ('mixed_float16'), where only Keras's
        own backward pass scales the loss, nor when a layer adds a loss in
        its forward pass (an activity regularizer), which would lose its
        weight gradient.
        """
        if not training or not all(term.fuses_clean_pass(self)
                                   for term in self.terms):
            return []
        if getattr(self.base_model, "compute_dtype", None) == "float16":
            return []
        for layer in _internals.flatten_layers(self.base_model):
            if getattr(layer, "activity_regularizer", None) is not None:
                return []
        return list(self.base_model.trainable_variables)

    # -- Losses and metrics -------------------------------------------------

    def loss_from_logits(self):
        """Whether the first compiled loss takes logits (`from_logits`)."""
        losses = self._parts.losses or []
        return bool(losses and getattr(losses[0][1], "from_logits", False))

    def labeled_loss(self, batch, predictions):
        """The weighted sum of the outputs' labeled losses on `batch`.

        When rows can be unlabeled, the mean over labeled rows (0 if none);
        labels of unlabeled rows are replaced by zeros, which would otherwise
        be out-of-range class indices (their loss is weighted 0).
        """
        labels, weights = _batch.on_labeled_rows(batch)
        flat_pred = tree.flatten(predictions)
        flat_labels = tree.flatten(labels)
        if len(flat_labels) != len(flat_pred) or len(flat_pred) != len(
                self._parts.losses):
            raise ValueError(
                "The model has different number of outputs and labels. "
                f"({len(flat_pred)} vs. {len(flat_labels)}; "
                f"label_keys={list(self.label_keys)})")
        total = sum(w * loss(y, p, weights) for (_, loss, w), y, p in zip(
            self._parts.losses, flat_labels, flat_pred))
        mask = batch.label_mask
        if mask is None:
            return total
        # Keras losses average over the batch: rescale to labeled rows.
        rows = ops.cast(ops.shape(mask)[0], "float32")
        return total * ops.cast(rows / ops.maximum(ops.sum(mask), 1.0),
                                total.dtype)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        step, self._slot.step = self._slot.step, None
        if step is None:  # Not after `call` (a custom loop): parse `x`.
            step = Step(batch=self._parse(x), outputs=y_pred,
                        extra=[None] * len(self.terms))
        batch = step.batch
        self._complete(batch, x, y, sample_weight, y_pred)
        labeled = self.labeled_loss(batch, y_pred)
        if step.loss_gradients is not None:
            # The recording may cover rows the terms added: the labeled loss
            # reads the batch's rows, whose gradients are the first ones.
            input_grads, weight_grads = step.loss_gradients(
                lambda result: self.labeled_loss(
                    batch, step.batch_rows(result["output"])))
            step.input_gradients = {
                k: step.batch_rows(g)
                for k, g in zip(step.recorded_keys, input_grads)}
            if step.fused_variables:
                labeled = _with_gradients(labeled, step.fused_variables,
                                          weight_grads)
        total = labeled
        for loss in self.losses:  # Regularizers of the clean pass.
            total = total + ops.cast(
                _internals.aggregate_additional_loss(self, loss), total.dtype)
        for i, term in enumerate(self.terms):
            value = term.loss(self, step, i, training)
            metric = getattr(self, self._parts.metric_attributes[i])
            if value is None:
                metric.update_state(ops.zeros((), "float32"))
                continue
            metric.update_state(value)
            # Per replica under tf.distribute: divided by the replica count,
            # as Keras does for its own losses (a no-op elsewhere).
            total = total + ops.cast(_distribution.scale(value), total.dtype)
        self._slot.batch = batch
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        batch, self._slot.batch = self._slot.batch, None
        if batch is None:
            batch = self._parse(x)
            self._complete(batch, x, y, sample_weight, y_pred)
        labels, weights = _batch.on_labeled_rows(batch)
        return super().compute_metrics(x, labels, y_pred, weights)


def _with_gradients(value, variables, grads):
    """`value`, whose gradient with respect to `variables` is `grads`.

    `stop_gradient(value) + (s - stop_gradient(s))` with
    `s = sum_i <v_i, stop_gradient(g_i)>`: the value is unchanged (the
    bracket is exactly 0) and differentiating it gives `g_i` for `v_i`, so
    the training step applies gradients computed in the clean pass without
    a second backward pass through it.
    """
    inner = sum(ops.sum(ops.cast(v.value, g.dtype) * ops.stop_gradient(g))
                for v, g in zip(variables, grads))
    return ops.stop_gradient(value) + ops.cast(
        inner - ops.stop_gradient(inner), value.dtype)
