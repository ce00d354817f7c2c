"""Variable scopes shared by the per-backend input-gradient modules.

A forward pass run for an input gradient must read the trainer's current
(possibly traced) variable values and must not leak variable writes: these
helpers build on `keras.StatelessScope` to inherit, record, discard or hand
on those writes. See `nsl.lib.gradients`.
"""

import contextlib

import keras
from keras import ops

from neural_structured_learning import _internals


class RecordingScope(keras.StatelessScope):
    """A `StatelessScope` that inherits its parent's values and records which
    variables were written, so their new values can be handed on."""

    def __init__(self, parent, collect_losses=True):
        # Collecting `add_loss` calls (activity regularizers) here means a
        # scratch pass leaves no loss behind and an inner JAX trace leaks no
        # tracer into a layer.
        super().__init__(collect_losses=collect_losses)
        self.inherited = dict(parent.state_mapping) if parent else {}
        self.state_mapping = dict(self.inherited)
        self.written = {}

    def add_update(self, update):
        super().add_update(update)
        self.written[id(update[0])] = update[0]

    def updates(self):
        """New values of the variables written in this scope, by id."""
        return {k: self.state_mapping[k] for k in self.written}


@contextlib.contextmanager
def scratch_scope():
    """Runs the enclosed code without any lasting variable writes.

    Reads see the current values (those of an enclosing `StatelessScope`
    included); writes are kept only until the scope exits.
    """
    with RecordingScope(_internals.get_stateless_scope()) as scope:
        yield scope


def hand_on(updates, variables, losses):
    """Hands variable writes and losses made inside a scope to the enclosing
    one (losses are dropped when it does not collect them)."""
    parent = _internals.get_stateless_scope()
    if parent is not None:
        parent.state_mapping.update(updates)
        if parent.collect_losses:
            parent.losses.extend(losses)
    else:
        for key, value in updates.items():
            variables[key].assign(value)


@contextlib.contextmanager
def injected(variables, values):
    """Reads `variables` as `values` inside; hands other writes on after.

    Without variables this is a no-op, so a plain forward pass keeps
    Keras's own handling of variable writes and losses.
    """
    if not variables:
        yield
        return
    parent = _internals.get_stateless_scope()
    with RecordingScope(parent, collect_losses=False) as scope:
        scope.state_mapping.update(
            {id(v): value for v, value in zip(variables, values)})
        yield
    hand_on(scope.updates(), scope.written, [])


def zeros_for_none(grads, xs):
    return [ops.zeros_like(x) if g is None else g for g, x in zip(grads, xs)]
