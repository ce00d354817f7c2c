"""Calling a base model with a dict of features (shared by the wrappers)."""

import keras
from keras import tree

from neural_structured_learning import _internals


def call(base_model, features, training=None, **kwargs):
    """Calls `base_model` on `features`, routing a dict to its inputs.

    * A model with named inputs (functional, or Sequential with an `Input`)
      gets its inputs by name, in its own input structure (a single input
      gets the bare tensor).
    * A Sequential model without named inputs gets a single feature as a
      bare tensor, several as a list sorted by key (as 1.4).
    * Any other model (subclassed) gets the dict.

    Raises:
        ValueError: if a named input of the model is not in `features`.
    """
    if isinstance(features, dict):
        features = _route(base_model, features)
    return base_model(features, training=training, **kwargs)


input_structure = _internals.input_structure


def input_names(model):
    """Names of the model's inputs, in its input order; None for a model
    without named inputs (subclassed)."""
    structure = input_structure(model)
    if structure is None:
        return None
    return [t.name for t in tree.flatten(structure)]


def _route(model, features):
    struct = input_structure(model)
    if struct is None:
        if not isinstance(model, keras.Sequential):
            return features
        if len(features) == 1:
            return next(iter(features.values()))
        return [features[k] for k in sorted(features)]

    def pick(tensor):
        name = tensor.name
        if name not in features:
            raise ValueError(
                f"The base model has an input named {name!r}, which is not "
                f"in the input dict (keys: {sorted(features)}). Name the "
                "model's inputs like the features, e.g. "
                f"keras.Input(..., name={name!r}).")
        return features[name]

    routed = tree.map_structure(pick, struct)
    if isinstance(routed, (list, tuple)) and len(routed) == 1:
        return routed[0]
    return routed
