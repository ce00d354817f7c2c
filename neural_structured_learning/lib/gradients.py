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

How each backend does it, nested inside Keras's own training step:

* TensorFlow: a nested `tf.GradientTape` that watches the inputs.
* PyTorch: detached leaf copies of the inputs with `requires_grad`, under
  `torch.enable_grad()` (Keras runs `evaluate` and its symbolic build under
  `no_grad`), and `torch.autograd.grad(..., retain_graph=True)` so the
  enclosing `loss.backward()` still works.
* JAX: `jax.vjp` run inside a child `keras.StatelessScope` that inherits the
  trainer's current (traced) variable values; variable writes made inside the
  transformation come back out through its auxiliary output and are handed to
  the enclosing scope (or assigned, outside a training step). Writing them
  directly would leak inner tracers (`UnexpectedTracerError`).
"""

import contextlib

import keras
from keras import ops
from keras import tree
from keras.src.backend.common import stateless_scope as _stateless_scope

_BACKEND = keras.config.backend()


class _RecordingScope(keras.StatelessScope):
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
    with _RecordingScope(_stateless_scope.get_stateless_scope()) as scope:
        yield scope


def _hand_on(updates, variables, losses):
    """Hands variable writes and losses made inside a scope to the enclosing
    one (losses are dropped when it does not collect them)."""
    parent = _stateless_scope.get_stateless_scope()
    if parent is not None:
        parent.state_mapping.update(updates)
        if parent.collect_losses:
            parent.losses.extend(losses)
    else:
        for key, value in updates.items():
            variables[key].assign(value)


@contextlib.contextmanager
def _injected(variables, values):
    """Reads `variables` as `values` inside; hands other writes on after.

    Without variables this is a no-op, so a plain forward pass keeps
    Keras's own handling of variable writes and losses.
    """
    if not variables:
        yield
        return
    parent = _stateless_scope.get_stateless_scope()
    with _RecordingScope(parent, collect_losses=False) as scope:
        scope.state_mapping.update(
            {id(v): value for v, value in zip(variables, values)})
        yield
    _hand_on(scope.updates(), scope.written, [])


def _zeros_for_none(grads, xs):
    return [ops.zeros_like(x) if g is None else g for g, x in zip(grads, xs)]


if _BACKEND == "tensorflow":
    import tensorflow as tf

    def forward_with_loss_gradients(fn, xs, variables=()):
        xs = [tf.convert_to_tensor(x) for x in xs]
        values = [tf.stop_gradient(tf.convert_to_tensor(v.value))
                  for v in variables]
        tape = tf.GradientTape(watch_accessed_variables=False)
        with tape:
            tape.watch(xs + values)
            with _injected(variables, values):
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
        return [tf.stop_gradient(g) for g in _zeros_for_none(grads, xs)]

    def _in_xla():
        from tensorflow.python.ops import control_flow_util  # pylint: disable=g-import-not-at-top
        graph = tf.compat.v1.get_default_graph()
        return control_flow_util.GraphOrParentsInXlaContext(graph)

    def checks_values_at_run_time(tensors):
        del tensors
        return not _in_xla()

    def assert_finite(tensors, message):
        if _in_xla():
            raise ValueError(
                "XLA drops runtime checks, so a NaN/Inf gradient cannot "
                "raise inside a function compiled with jit_compile=True on "
                "TensorFlow. Compile with jit_compile=False, or use "
                "nonfinite_gradient='zero'.")
        return [tf.debugging.assert_all_finite(t, message) for t in tensors]

elif _BACKEND == "torch":
    import torch

    def forward_with_loss_gradients(fn, xs, variables=()):
        with torch.enable_grad():
            leaves = [ops.convert_to_tensor(x).detach().requires_grad_(True)
                      for x in xs]
            values = [v.value.detach().requires_grad_(True)
                      for v in variables]
            with _injected(variables, values):
                outputs = fn(leaves)

        def loss_gradients(loss_fn):
            inputs = leaves + values
            with torch.enable_grad():
                loss = loss_fn(outputs)
                if not (torch.is_tensor(loss) and loss.requires_grad):
                    grads = [torch.zeros_like(x) for x in inputs]
                else:
                    grads = torch.autograd.grad(
                        loss, inputs, retain_graph=not variables,
                        allow_unused=True)
            grads = [g.detach() for g in _zeros_for_none(grads, inputs)]
            return grads[:len(leaves)], grads[len(leaves):]

        return outputs, loss_gradients

    def gradients_of(value, xs, gradient_tape=None):
        del gradient_tape  # autograd records the graph itself.
        if not (torch.is_tensor(value) and value.requires_grad):
            raise ValueError(
                "The loss is not connected to any tensor that requires "
                "gradients. With PyTorch, call `x.requires_grad_()` on the "
                "inputs before computing the loss, or pass a loss function "
                "instead of a loss value.")
        grads = torch.autograd.grad(value, list(xs), retain_graph=True,
                                    allow_unused=True)
        return [g.detach() for g in _zeros_for_none(grads, xs)]

    def checks_values_at_run_time(tensors):
        return not any(getattr(t, "is_meta", False) for t in tensors)

    def assert_finite(tensors, message):
        for t in tensors:
            if not bool(torch.isfinite(t).all()):
                raise FloatingPointError(message)
        return tensors

elif _BACKEND == "jax":
    import jax

    from neural_structured_learning import _jax_flags
    _jax_flags.configure()  # XLA:CPU scheduler; see _jax_flags.py.

    def forward_with_loss_gradients(fn, xs, variables=()):
        parent = _stateless_scope.get_stateless_scope()
        values = [jax.lax.stop_gradient(v.value) for v in variables]
        written = {}

        def scoped_fn(xs_, values_):
            with _RecordingScope(parent) as scope:
                scope.state_mapping.update(
                    {id(v): value for v, value in zip(variables, values_)})
                outputs = fn(xs_)
            written.update(scope.written)
            return outputs, (scope.updates(), scope.losses)

        outputs, vjp, (updates, losses) = jax.vjp(
            scoped_fn, list(xs), values, has_aux=True)
        _hand_on(updates, written, losses)

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

else:
    raise ImportError(
        "neural_structured_learning supports the 'tensorflow', 'jax' and "
        f"'torch' Keras backends. Received: KERAS_BACKEND={_BACKEND!r}")


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
