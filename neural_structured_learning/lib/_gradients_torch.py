"""Input gradients on PyTorch (see `nsl.lib.gradients`).

Detached leaf copies of the inputs with `requires_grad`, under
`torch.enable_grad()` (Keras runs `evaluate` and its symbolic build under
`no_grad`), and `torch.autograd.grad(..., retain_graph=True)` so the
enclosing `loss.backward()` still works.
"""

import torch
from keras import ops

from neural_structured_learning.lib import _scopes


def forward_with_loss_gradients(fn, xs, variables=()):
    with torch.enable_grad():
        leaves = [ops.convert_to_tensor(x).detach().requires_grad_(True)
                  for x in xs]
        values = [v.value.detach().requires_grad_(True)
                  for v in variables]
        with _scopes.injected(variables, values):
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
        grads = [g.detach() for g in _scopes.zeros_for_none(grads, inputs)]
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
    return [g.detach() for g in _scopes.zeros_for_none(grads, xs)]

def checks_values_at_run_time(tensors):
    return not any(getattr(t, "is_meta", False) for t in tensors)

def assert_finite(tensors, message):
    for t in tensors:
        if not bool(torch.isfinite(t).all()):
            raise FloatingPointError(message)
    return tensors
