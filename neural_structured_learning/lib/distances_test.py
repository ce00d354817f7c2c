"""Tests for distances.py, against NSL 1.4's values (reference §9.2 C)."""

import numpy as np
import pytest

from neural_structured_learning import configs
from neural_structured_learning._testing import assert_allclose
from neural_structured_learning.lib import distances

R = configs.Reduction
S = np.array([[1, 1], [2, 2], [0, 2], [5, 5]], "float32")
T = np.array([[1, 1], [0, 2], [4, 4], [1, 4]], "float32")
W = np.array([[1], [0], [.5], [.5]], "float32")


def distance(kind, weights=1.0, axis=-1, reduction=R.SUM_BY_NONZERO_WEIGHTS,
             sources=S, targets=T, transform="none"):
    config = configs.DistanceConfig(kind, reduction, axis, transform)
    return distances.pairwise_distance_wrapper(sources, targets, weights,
                                               config)


@pytest.mark.parametrize("kind, weights, axis, reduction, expected", [
    ("l1", 1.0, -1, R.SUM_BY_NONZERO_WEIGHTS, 3.25),
    ("l2", 1.0, -1, R.SUM_BY_NONZERO_WEIGHTS, 10.25),
    ("l1", 1.0, None, R.SUM_BY_NONZERO_WEIGHTS, 1.625),
    ("l2", 1.0, None, R.SUM_BY_NONZERO_WEIGHTS, 5.125),
    ("l1", W, -1, R.SUM_BY_NONZERO_WEIGHTS, 5.5 / 3),
    ("l2", W, -1, R.SUM_BY_NONZERO_WEIGHTS, 18.5 / 3),
    ("l1", W, -1, R.SUM, 5.5),
    ("l1", W, -1, R.MEAN, 2.75),
    ("l2", W, -1, R.MEAN, 9.25),
    ("l1", W, -1, R.SUM_OVER_BATCH_SIZE, 1.375),
    ("l1", W, None, R.SUM_BY_NONZERO_WEIGHTS, 5.5 / 6),
    ("l2", np.zeros((4, 1), "float32"), -1, R.SUM_BY_NONZERO_WEIGHTS, 0.0),
])
def test_l1_l2(kind, weights, axis, reduction, expected):
    assert_allclose(distance(kind, weights, axis, reduction), expected,
                    rtol=1e-6)


def test_none_reduction_is_elementwise():
    assert_allclose(distance("l1", W, reduction=R.NONE),
                    [[0, 0], [0, 0], [2, 1], [2, .5]])
    assert_allclose(distance("l2", reduction=R.NONE),
                    [[0, 0], [4, 0], [16, 4], [16, 1]])


def test_cosine():
    sources = np.array([[1, 1], [1, 1], [3, 4], [-1, -1]], "float32")
    targets = np.array([[1, 1], [5, 5], [4, 3], [1, 1]], "float32")
    assert_allclose(distance("cosine", sources=sources, targets=targets),
                    0.51, rtol=1e-5)  # Rows [0, 0, 0.04, 2].
    with pytest.raises(ValueError, match="You must specify argument axis"):
        distance("cosine", axis=None)


P = np.array([[1, 0, 0], [.1, .2, .7]], "float32")
Q = np.array([[1, 0, 0], [.1, .9, 0]], "float32")


def test_kl_and_jsd():
    assert_allclose(distances.kl_divergence(P, Q, axis=-1), 5.366090,
                    rtol=1e-5)
    assert_allclose(distances.jensen_shannon_divergence(P, Q, axis=-1),
                    0.181528, rtol=1e-5)
    assert_allclose(distance("kl_divergence", sources=P, targets=Q),
                    5.366090, rtol=1e-5)


def test_softmax_transform():
    a = np.array([[1, 2, 3], [1, -1, 2]], "float32")
    b = np.array([[1, 2, 3], [1, 0, -1]], "float32")
    assert_allclose(distance("jensen_shannon_divergence", sources=a,
                             targets=b, transform="softmax"), 0.112710,
                    rtol=1e-5)
    assert_allclose(distance("kl_divergence", sources=a, targets=b,
                             transform="softmax"), 0.569814, rtol=1e-5)
    sources = np.array([[1, 1], [2, 2], [0, 2], [10, -10]], "float32")
    targets = np.array([[0, 0], [0, 2], [1, 3], [3, 3]], "float32")
    assert_allclose(distance("l1", axis=None, reduction=R.NONE,
                             sources=sources, targets=targets,
                             transform="softmax"),
                    [[0, 0], [.3808, .3808], [0, 0], [.5, .5]], atol=1e-4)


def test_bad_inputs():
    with pytest.raises(ValueError, match='You must specify "axis"'):
        distances.kl_divergence(P, Q)
    with pytest.raises(ValueError, match="not a proper probability"):
        distances.kl_divergence(P, np.array([[1, 0, 0], [.1, .2, .8]],
                                            "float32"), axis=-1)
    with pytest.raises(ValueError, match="not a proper probability"):
        distances.jensen_shannon_divergence(
            P, np.array([[1.2, -.2, 0], [.1, .9, 0]], "float32"), axis=-1)
    with pytest.raises(ValueError, match=r"Shape of weights along the axis "
                                         r"-1 must be 1"):
        distance("l1", weights=np.array([[4, 2]], "float32"))
    with pytest.raises(ValueError, match=r"`axis` = 2 not in \[-2, 2\)"):
        distance("l2", axis=2)
    with pytest.raises(ValueError, match="are incompatible"):
        distance("l2", targets=T[:, :1])
