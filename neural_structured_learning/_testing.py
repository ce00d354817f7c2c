"""Helpers shared by the tests (not part of the public API)."""

import numpy as np
from keras import ops
from keras import tree


def to_numpy(x):
    """Converts a backend tensor (or a structure of them) to NumPy."""
    def convert(t):
        if ops.is_tensor(t):
            t = ops.stop_gradient(t)
        return np.asarray(ops.convert_to_numpy(t))

    return tree.map_structure(convert, x)


def assert_allclose(actual, expected, rtol=1e-6, atol=1e-6):
    """`np.testing.assert_allclose` for tensors and structures of them."""
    actual = to_numpy(actual)
    if not isinstance(expected, (dict, list, tuple)):
        expected = to_numpy(expected)
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected), (sorted(actual),
                                                    sorted(expected))
        for key in expected:
            np.testing.assert_allclose(actual[key], expected[key], rtol=rtol,
                                       atol=atol, err_msg=f"key {key!r}")
        return
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list,
                                                                   tuple)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)
        return
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)
