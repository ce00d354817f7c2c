"""Input gradients on JAX (see `nsl.lib.gradients`).

`jax.vjp` run inside a child `keras.StatelessScope` that inherits the
trainer's current (traced) variable values; variable writes made inside the
transformation come back out through its auxiliary output and are handed to
the enclosing scope (or assigned, outside a training step).
"""

import jax

from neural_structured_learning import _internals
from neural_structured_learning import _jax_flags
from neural_structured_learning.lib import _scopes

_jax_flags.configure()  # XLA:CPU scheduler; see _jax_flags.py.

def forward_with_loss_gradients(fn, xs, variables=()):
    parent = _internals.get_stateless_scope()
    values = [jax.lax.stop_gradient(v.value) for v in variables]
    written = {}

    def scoped_fn(xs_, values_):
        with _scopes.RecordingScope(parent) as scope:
            scope.state_mapping.update(
                {id(v): value for v, value in zip(variables, values_)})
            outputs = fn(xs_)
        written.update(scope.written)
        return outputs, (scope.updates(), scope.losses)

    outputs, vjp, (updates, losses) = jax.vjp(
        scoped_fn, list(xs), values, has_aux=True)
    _scopes.hand_on(updates, written, losses)

    def loss_gradients(loss_fn):
        # JAX arrays carry no logits: the loss is a function of outputs.
        cotangents = jax.grad(loss_fn)(outputs)
        grads_x, grads_v = vjp(cotangents)
        stop = jax.lax.stop_gradient
        return [stop(g) for g in grads_x], [stop(g) for g in grads_v]

    return outputs, loss_gradients

def gradients_of(value, xs, gradient_tape=None):
    raise ValueError(
        "JAX cannot differentiate an already computed loss value. Pass a "
        "loss function instead (e.g. `labeled_loss=lambda features: ...` "
        "or `pgd_model_fn` and `pgd_loss_fn`).")

def checks_values_at_run_time(tensors):
    del tensors
    return True

def assert_finite(tensors, message):
    def check(all_finite):
        if not all_finite:
            raise FloatingPointError(message)

    finite = [jax.numpy.all(jax.numpy.isfinite(t)) for t in tensors]
    jax.debug.callback(check, jax.numpy.all(jax.numpy.stack(finite)))
    return tensors
