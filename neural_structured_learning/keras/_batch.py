"""One batch, parsed once: the `Batch` record of `RegularizedModel`.

Keras hands a training step `(x, y, sample_weight)`; NSL 1.4's data puts
labels, sample weights (and VAT's label mask) inside the input dict `x`,
and graph regularization packs neighbours into it. `parse` splits `x` once
into what the base model reads and the rest; `complete` adds Keras's own
`y`/`sample_weight` (known only in `compute_loss`) and the label mask.
"""

import dataclasses

import keras
from keras import ops
from keras import tree

from neural_structured_learning.keras import _base_model


@dataclasses.dataclass
class Batch:
    """One batch, parsed once.

    Attributes:
        features: what the base model is called on (a dict without labels,
            sample weights, label mask and the terms' own keys; or the
            tensor/list given).
        labels: the labels (from the input dict, or Keras's `y`).
        sample_weight: sample weights (input dict or Keras), or None.
        label_mask: float `[batch]`, 1 on labeled rows, when the model marks
            unlabeled rows; else None (every row is labeled).
        term_inputs: per term, what it took from the input dict (e.g. the
            neighbour features and weights), or None.
        raw_mask: the `label_mask_key` entry of the input dict, if any.
    """

    features: object
    labels: object = None
    sample_weight: object = None
    label_mask: object = None
    term_inputs: list = dataclasses.field(default_factory=list)
    raw_mask: object = None


def parse(model, x, shapes=False):
    """Returns the `Batch` of an input (labels from the dict only).

    With `shapes=True`, `x` is a dict of shapes (for `build`).
    """
    if not isinstance(x, dict):
        return Batch(features=x, term_inputs=[None] * len(model.terms))
    if shapes:
        features = dict(x)
    else:
        features = {k: v if v is None or ops.is_tensor(v) else
                    ops.convert_to_tensor(v) for k, v in x.items()}
    batch = Batch(features=features)
    present = [k for k in model.label_keys if k in x]
    if present:
        if len(present) != len(model.label_keys):
            missing = [k for k in model.label_keys if k not in x]
            raise ValueError(
                f"Label key(s) {missing} not found in the input dict "
                f"(keys: {sorted(x)}); label_keys={list(model.label_keys)}"
                ".")
        labels = [features[k] for k in model.label_keys]
        batch.labels = labels[0] if len(labels) == 1 else labels
    if model.sample_weight_key is not None and model.sample_weight_key in x:
        batch.sample_weight = features[model.sample_weight_key]
    if not model.base_with_labels_in_features:
        for k in present + [model.sample_weight_key]:
            features.pop(k, None)
    if model.label_mask_key is not None and model.label_mask_key in x:
        batch.raw_mask = features.pop(model.label_mask_key)
    for term in model.terms:
        if shapes:
            features, taken = term.strip(features), None
        else:
            features, taken = term.take_inputs(model, features)
        batch.term_inputs.append(taken)
    names = _base_model.input_names(model.base_model)
    if names is not None:  # Only what the base model reads is perturbed.
        features = {k: v for k, v in features.items() if k in names}
    batch.features = features
    return batch

def complete(model, batch, x, y, sample_weight, y_pred=None):
    """Adds Keras's `y`/`sample_weight` and the label mask to `batch`."""
    if y is not None:
        if batch.labels is not None:
            present = [k for k in model.label_keys if k in x]
            raise ValueError(
                f"Labels were given twice: as `y` and under {present} in "
                "the input dict. Give them one way.")
        batch.labels = y
    if sample_weight is not None:
        if batch.sample_weight is not None:
            raise ValueError(
                "Sample weights were given twice: as `sample_weight` and "
                f"under {model.sample_weight_key!r} in the input dict.")
        batch.sample_weight = sample_weight
    if batch.labels is None:
        raise ValueError(model.missing_labels_message(x))
    if (isinstance(y_pred, (list, tuple))
            and not isinstance(batch.labels, (list, tuple))):
        batch.labels = [batch.labels]  # A single output in a list.
    if model.marks_unlabeled_rows():
        rows = (tree.flatten(y_pred)[0].shape[0] if y_pred is not None
                else None)
        batch.label_mask = label_mask(model, batch, rows)


def label_mask(model, batch, rows):
    """Float mask `[batch]`: 1 for labeled rows."""
    mask = batch.raw_mask
    if mask is not None:
        mask = ops.convert_to_tensor(mask)
        if len(mask.shape) == 2 and mask.shape[1] == 1:
            mask = ops.squeeze(mask, axis=1)
        if len(mask.shape) != 1 or (mask.shape[0] is not None and
                                    rows is not None and
                                    mask.shape[0] != rows):
            raise ValueError(
                f"The label mask {model.label_mask_key!r} must have shape "
                f"[batch] or [batch, 1] (batch {rows}). Received shape "
                f"{tuple(mask.shape)}.")
        return ops.cast(mask, "float32")
    labels = ops.convert_to_tensor(tree.flatten(batch.labels)[0])
    dtype = keras.backend.standardize_dtype(labels.dtype)
    count = ops.shape(labels)[0]
    is_int = keras.backend.is_int_dtype(dtype)
    if model.unlabeled_label is None or not (
            is_int or keras.backend.is_float_dtype(dtype)):
        return ops.ones((count,), "float32")
    # A row is unlabeled when any integer entry is the marker, or when
    # every float entry is (sparse [B] or [B, 1] labels equal to -1, or
    # a dense row of all -1, which no one-hot or smoothed label can be).
    marker = ops.reshape(
        ops.equal(labels, ops.cast(model.unlabeled_label, dtype)),
        (count, -1))
    unlabeled = (ops.any if is_int else ops.all)(marker, axis=1)
    return 1.0 - ops.cast(unlabeled, "float32")


def on_labeled_rows(batch):
    """`(labels, weights)` that restrict a loss or metric to labeled rows.

    Without a label mask, the batch's labels and sample weights. With one,
    the weights are `mask * sample_weight` and the labels of unlabeled rows
    are replaced by 0 (`_safe_labels`).
    """
    labels, weights, mask = batch.labels, batch.sample_weight, batch.label_mask
    if mask is None:
        return labels, weights
    labels = tree.map_structure(lambda t: _safe_labels(t, mask), labels)
    weights = mask if weights is None else mask * ops.reshape(
        ops.cast(weights, "float32"), ops.shape(mask))
    return labels, weights


def _safe_labels(labels, labeled):
    """Labels with unlabeled rows set to 0 (their loss is weighted 0)."""
    labels = ops.convert_to_tensor(labels)
    dtype = keras.backend.standardize_dtype(labels.dtype)
    if not (keras.backend.is_int_dtype(dtype)
            or keras.backend.is_float_dtype(dtype)):
        return labels
    # A -1 would be an out-of-range class index for sparse losses (an error
    # on TensorFlow, NaN or a wrapped index elsewhere, and NaN * 0 = NaN).
    keep = ops.reshape(ops.cast(labeled, "bool"),
                       (-1,) + (1,) * (len(labels.shape) - 1))
    return ops.where(keep, labels, ops.zeros_like(labels))
