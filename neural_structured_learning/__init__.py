"""Neural Structured Learning for Keras 3.

Train neural networks with structured signals (graphs, adversarial neighbours)
on TensorFlow, JAX or PyTorch.

Sub-packages are imported lazily, so `nsl.configs` and `nsl.tools` work without
Keras or any deep-learning framework installed; `nsl.lib` and `nsl.keras` need
Keras 3 and one backend.
"""

import importlib
import os

from neural_structured_learning import _jax_flags
from neural_structured_learning.version import __version__

if os.environ.get("KERAS_BACKEND") == "jax":
    _jax_flags.configure(warn=False)

_SUBPACKAGES = ("configs", "evaluation", "keras", "lib", "tools")

__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name):
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
