"""Turns off XLA:CPU's concurrency-optimized scheduler for JAX, if possible.

With that scheduler (on by default in recent jaxlib) XLA:CPU interleaves the
independent parts of a training step that contains an input gradient.
Measured on 2 CPU cores, MNIST CNN, batch 32: an FGSM step costs 3.4-3.7x
the base step, although its parts compiled separately cost 2.0x; with the
scheduler off the whole step costs 1.9x and the base step is unchanged (see
docs/adversarial.md). XLA reads XLA_FLAGS once, when JAX starts its
backends, so the flag must be set before the first JAX computation.

`configure()` adds `--xla_cpu_enable_concurrency_optimized_scheduler=false`
to XLA_FLAGS unless the flag is already there, NSL_KEEP_XLA_FLAGS is set, or
JAX has already started (then it warns). It imports nothing heavy: the
top-level package calls it when KERAS_BACKEND=jax, and
`nsl.lib.gradients` calls it when Keras runs on JAX.
"""

import os
import warnings

from neural_structured_learning import _internals

FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"




def configure(warn=True):
    """Adds the flag to XLA_FLAGS if JAX has not started (see module doc)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG in flags or os.environ.get("NSL_KEEP_XLA_FLAGS"):
        return
    if _internals.jax_backends_started():
        if warn:
            warnings.warn(
                "JAX started before neural_structured_learning was imported, "
                "so XLA_FLAGS could not be tuned: on CPU, adversarial and VAT "
                "training steps may run up to ~1.8x slower. Import "
                "neural_structured_learning before running JAX code, or set "
                f"XLA_FLAGS={FLAG}=false (NSL_KEEP_XLA_FLAGS=1 silences "
                "this).", stacklevel=3)
        return
    os.environ["XLA_FLAGS"] = f"{flags} {FLAG}=false".strip()
