"""Pytest configuration: report the Keras backend, set up doctests.

Docstring examples run as doctests (`pytest --doctest-modules`, see
`scripts/test.sh`). Each example may use `np` (NumPy), `nsl`
(`neural_structured_learning`) and, outside the framework-free `configs` and
`tools` packages, `keras`: what a user has after

    import keras
    import numpy as np
    import neural_structured_learning as nsl
"""

import os
import re
import sys

import pytest

# Command-line scripts run by the cross-backend and distribution tests: they
# parse `sys.argv` when imported, so `--doctest-modules` must not import them.
collect_ignore_glob = ["tests/*_worker.py"]

# `lib/_gradients_<backend>.py` import their framework (jax, tensorflow,
# torch) at the top, and only the active backend's is ever imported.
_BACKEND_MODULE = re.compile(r"_gradients_(jax|tensorflow|torch)\.py")


def pytest_ignore_collect(collection_path, config):
    """Skips the other backends' modules under `--doctest-modules`."""
    del config
    match = _BACKEND_MODULE.fullmatch(collection_path.name)
    if match is None:
        return None
    import keras  # pylint: disable=import-outside-toplevel
    return True if match.group(1) != keras.config.backend() else None


def pytest_report_header(config):
    del config
    backend = os.environ.get("KERAS_BACKEND", "tensorflow (Keras default)")
    return f"KERAS_BACKEND={backend}  NSL_DATA_DIR={os.environ.get('NSL_DATA_DIR', '(unset)')}"


@pytest.fixture(autouse=True)
def _doctest_imports(doctest_namespace):
    """`np`, `nsl` and (when already imported) `keras` for doctests.

    `keras` is only added once a module under test has imported it, so the
    framework-free run over `configs` and `tools` never imports Keras (their
    tests check that they work without it).
    """
    import numpy as np
    import neural_structured_learning as nsl
    doctest_namespace["np"] = np
    doctest_namespace["nsl"] = nsl
    if "keras" in sys.modules:
        doctest_namespace["keras"] = sys.modules["keras"]
