"""Neural Structured Learning for Keras 3.

Train neural networks with structured signals (graphs, adversarial neighbours)
on TensorFlow, JAX or PyTorch.

Sub-packages are imported lazily, so `nsl.configs`, `nsl.tools` and
`nsl.datasets` work without Keras or any deep-learning framework installed; `nsl.lib` and `nsl.keras` need
Keras 3 and one backend.
"""

import os

from neural_structured_learning import _jax_flags
from neural_structured_learning._core import lazy
from neural_structured_learning.version import __version__

if os.environ.get("KERAS_BACKEND") == "jax":
    _jax_flags.configure(warn=False)

_SUBPACKAGES = ("configs", "datasets", "evaluation", "keras", "lib", "tools")
__all__ = ["__version__", *_SUBPACKAGES]

__getattr__, __dir__ = lazy.exports(__name__, {
    name: name for name in _SUBPACKAGES})
