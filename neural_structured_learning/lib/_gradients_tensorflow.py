"""Input gradients on TensorFlow (see `nsl.lib.gradients`).

A nested `tf.GradientTape` that watches the inputs; the loss is recorded
on the same tape, since Keras's TensorFlow crossentropy may read the logits
behind a softmax/sigmoid output.
"""

import tensorflow as tf

from neural_structured_learning import _internals
from neural_structured_learning.lib import _scopes


def forward_with_loss_gradients(fn, xs, variables=()):
    xs = [tf.convert_to_tensor(x) for x in xs]
    values = [tf.stop_gradient(tf.convert_to_tensor(v.value))
              for v in variables]
    tape = tf.GradientTape(watch_accessed_variables=False)
    with tape:
        tape.watch(xs + values)
        with _scopes.injected(variables, values):
            outputs = fn(xs)

    def loss_gradients(loss_fn):
        with tape:  # Record the loss too: it may read the logits.
            loss = loss_fn(outputs)
        grads = tape.gradient(
            loss, xs + values,
            unconnected_gradients=tf.UnconnectedGradients.ZERO)
        grads = [tf.stop_gradient(g) for g in grads]
        return grads[:len(xs)], grads[len(xs):]

    return outputs, loss_gradients

def gradients_of(value, xs, gradient_tape=None):
    if gradient_tape is None:
        if tf.executing_eagerly():
            raise ValueError(
                "`gradient_tape` is required to differentiate an already "
                "computed loss in TensorFlow eager mode: compute the loss "
                "under `tf.GradientTape()` and pass the tape, or pass a "
                "loss function instead of a loss value.")
        grads = tf.gradients(value, xs)
    else:
        grads = gradient_tape.gradient(
            value, xs,
            unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [tf.stop_gradient(g) for g in _scopes.zeros_for_none(grads, xs)]

def checks_values_at_run_time(tensors):
    del tensors
    return not _internals.tf_in_xla_context()

def assert_finite(tensors, message):
    if _internals.tf_in_xla_context():
        raise ValueError(
            "XLA drops runtime checks, so a NaN/Inf gradient cannot "
            "raise inside a function compiled with jit_compile=True on "
            "TensorFlow. Compile with jit_compile=False, or use "
            "nonfinite_gradient='zero'.")
    return [tf.debugging.assert_all_finite(t, message) for t in tensors]
