"""Exports of a package that are imported on first use.

Used by the packages whose names would otherwise import Keras on
`import neural_structured_learning` (the top-level package, `evaluation`):

    __all__ = ["evaluate_robustness", ...]
    __getattr__, __dir__ = lazy.exports(__name__, {
        "evaluate_robustness": "_evaluate", ...})
"""

import importlib
import sys


def exports(package, names):
    """Returns `(__getattr__, __dir__)` for `package`.

    Args:
        package: the package's `__name__`.
        names: `{name: module}`: `package.name` is `module`'s attribute
            `name` (`module` relative to `package`), or the sub-module
            `module` itself when `name == module`.
    """
    def __getattr__(name):  # pylint: disable=invalid-name
        if name not in names:
            raise AttributeError(
                f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f"{package}.{names[name]}")
        value = module if name == names[name] else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():  # pylint: disable=invalid-name
        return sorted(sys.modules[package].__all__)

    return __getattr__, __dir__
