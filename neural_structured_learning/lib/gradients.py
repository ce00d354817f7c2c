"""Gradients with respect to inputs: the library's only backend-specific code.

Keras 3 computes gradients with respect to weights inside its training step,
but has no portable way to differentiate with respect to *inputs*, which
adversarial neighbours need. This module provides it, once per backend, chosen
when it is imported by `keras.config.backend()`:

* `forward_with_loss_gradients(fn, xs, variables=())` runs `fn(xs)` as a
  real forward pass (variable writes kept) and returns its outputs with a
  function `loss_gradients(loss_fn)` that computes `loss = loss_fn(outputs)`
  on the same recording and returns `(gradients of loss wrt xs, gradients
  wrt variables)`, both constants (`stop_gradient`). The loss is evaluated
  *inside* the recording because that is the only way to differentiate it as
  it is computed: Keras's TensorFlow crossentropy reads the logits behind a
  softmax/sigmoid output (`_keras_logits`, or the `Softmax` op's input in a
  graph), so a gradient taken with respect to the recorded probabilities
  themselves is disconnected from such a loss and comes back as zeros.
  Without `variables` the outputs stay
  differentiable with respect to the model weights for an enclosing training
  step. With `variables` (a model's trainable weights) those are read as
  constants instead, and one backward pass gives the gradients with respect
  to inputs *and* weights: the caller then hands the weight gradients to
  the training step itself (see `AdversarialRegularization`), which saves a
  backward pass.
* `value_and_input_gradients(fn, xs)` returns `fn(xs)` (a scalar) and its
  gradient with respect to `xs`, from a *scratch* pass: variable writes made
  by `fn` (BatchNormalization moving statistics, random-seed state) are
  discarded, and the value and gradients are constants.
* `gradients_of(value, xs, gradient_tape)` differentiates an already computed
  value (NSL 1.4's form): TensorFlow needs the tape that recorded it, PyTorch
  uses its autograd graph, JAX cannot do this and raises.
* `assert_finite(tensors, message)` raises `FloatingPointError` (TensorFlow:
  `InvalidArgumentError`) when a gradient has NaN or Inf entries, also
  inside compiled functions. `checks_values_at_run_time(tensors)` says
  whether it can: not under TensorFlow's XLA (which drops run-time checks),
  not on PyTorch's shape-only meta tensors.

This module is the dispatcher: it imports the one backend module that
implements these functions, nested inside Keras's own training step
(`_gradients_tensorflow.py`: a nested `tf.GradientTape`;
`_gradients_torch.py`: detached leaves under `torch.enable_grad()`;
`_gradients_jax.py`: `jax.vjp` inside a child `keras.StatelessScope`, whose
variable writes are handed back out, since writing them directly would leak
inner tracers). The scopes they share are in `_scopes.py`.
"""

import importlib

import keras
from keras import ops

from neural_structured_learning.lib import _scopes

_BACKEND = keras.config.backend()
_MODULES = {"tensorflow": "_gradients_tensorflow", "jax": "_gradients_jax",
            "torch": "_gradients_torch"}
if _BACKEND not in _MODULES:
    raise ImportError(
        "neural_structured_learning supports the 'tensorflow', 'jax' and "
        f"'torch' Keras backends. Received: KERAS_BACKEND={_BACKEND!r}")
_impl = importlib.import_module(
    f"neural_structured_learning.lib.{_MODULES[_BACKEND]}")

forward_with_loss_gradients = _impl.forward_with_loss_gradients
gradients_of = _impl.gradients_of
assert_finite = _impl.assert_finite
checks_values_at_run_time = _impl.checks_values_at_run_time
scratch_scope = _scopes.scratch_scope


def value_and_input_gradients(fn, xs):
    """Returns `(fn(xs), d fn(xs) / d xs)` from a scratch pass.

    Args:
        fn: a function of a list of tensors returning a scalar tensor.
        xs: a list of floating-point tensors.

    Returns:
        A tuple `(value, grads)`: the scalar and a list of tensors shaped like
        `xs`. Both are constants for any enclosing differentiation. Variable
        writes made by `fn` are discarded.
    """
    with scratch_scope():
        value, loss_gradients = forward_with_loss_gradients(fn, xs)
        grads, _ = loss_gradients(lambda v: v)
    return ops.stop_gradient(value), grads
