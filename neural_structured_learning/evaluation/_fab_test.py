"""Tests for _fab.py (FAB-T): the projections against independent solvers,
and the attack on a linear model, whose minimal adversarial distance is
known in closed form (see _apgd_test.py)."""

import keras
import numpy as np
import pytest
from scipy import optimize

from neural_structured_learning.evaluation import _apgd_test, _fab


def _project(t, w, b, norm, clip):
    return keras.ops.convert_to_numpy(_fab.project(
        keras.ops.convert_to_tensor(t), keras.ops.convert_to_tensor(w),
        keras.ops.convert_to_tensor(b), norm, clip)).astype(np.float64)


def _linf_by_lp(t, w, b, low, high):
    """min s s.t. |d_i| <= s, <w, t + d> = b, low <= t + d <= high, as a
    linear programme in (d, s); None if infeasible."""
    size = len(t)
    cost = np.r_[np.zeros(size), 1.0]
    eye = np.eye(size)
    upper = np.block([[eye, -np.ones((size, 1))],
                      [-eye, -np.ones((size, 1))]])
    bounds = [(low - ti, high - ti) for ti in t] + [(0, None)]
    result = optimize.linprog(cost, A_ub=upper, b_ub=np.zeros(2 * size),
                              A_eq=np.r_[w, 0.0][None], b_eq=[b - w @ t],
                              bounds=bounds, method="highs")
    return result.x[-1] if result.status == 0 else None


def _l2_by_bisection(t, w, b, low, high):
    """The KKT solution d(lam) = clip(-lam w, low - t, high - t): <w, d(lam)>
    decreases in lam, so lam solving <w, d> = b - <w, t> is bisected.
    Returns ||d||_2, or None if the box does not reach the hyperplane."""
    gap = b - w @ t

    def reach(lam):
        return w @ np.clip(-lam * w, low - t, high - t)

    lo, hi = -1e6, 1e6
    if not reach(hi) <= gap <= reach(lo):
        return None
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if reach(mid) > gap else (lo, mid)
    return np.linalg.norm(np.clip(-lo * w, low - t, high - t))


@pytest.mark.parametrize("norm", ["infinity", "l2"])
@pytest.mark.parametrize("clip", [(0.0, 1.0), (-1.0, 2.0)])
def test_projection_is_the_minimal_step_onto_the_hyperplane_in_the_box(
        norm, clip):
    rng = np.random.default_rng(0)
    rows, size = 40, 6
    low, high = clip
    t = rng.uniform(low, high, (rows, size)).astype("float32")
    w = rng.normal(size=(rows, size)).astype("float32")
    w[rng.uniform(size=w.shape) < 0.15] = 0.0
    # Gaps from tiny to beyond the box's reach.
    scale = rng.choice([0.05, 0.5, 3.0], rows) * np.abs(w).sum(1)
    b = (np.sum(w * t, 1) + rng.normal(size=rows) * scale).astype("float32")
    d = _project(t, w, b, norm, clip)
    solve = _linf_by_lp if norm == "infinity" else _l2_by_bisection
    reached = 0
    for i in range(rows):
        x = t[i] + d[i]
        assert np.all(x >= low - 1e-5) and np.all(x <= high + 1e-5)
        best = solve(t[i].astype(np.float64), w[i].astype(np.float64),
                     float(b[i]), low, high)
        if best is None:
            # Out of reach: the box point closest to the hyperplane.
            assert abs(w[i] @ x - b[i]) <= abs(w[i] @ t[i] - b[i]) + 1e-5
            continue
        reached += 1
        assert w[i] @ x == pytest.approx(b[i], abs=1e-4)
        size_ = np.abs(d[i]).max() if norm == "infinity" else (
            np.linalg.norm(d[i]))
        assert size_ == pytest.approx(best, rel=1e-4, abs=1e-5)
    assert 10 < reached < rows


@pytest.mark.parametrize("norm", ["infinity", "l2"])
def test_projection_without_a_box_is_the_closed_form(norm):
    rng = np.random.default_rng(1)
    t = rng.normal(size=(5, 4)).astype("float32")
    w = rng.normal(size=(5, 4)).astype("float32")
    b = rng.normal(size=5).astype("float32")
    d = _project(t, w, b, norm, None)
    gap = (b - np.sum(w * t, 1))[:, None]
    expected = (gap * np.sign(w) / np.abs(w).sum(1, keepdims=True)
                if norm == "infinity"
                else gap * w / (w * w).sum(1, keepdims=True))
    np.testing.assert_allclose(d, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", ["infinity", "l2"])
def test_fab_t_finds_the_minimal_distance_of_a_linear_model(norm):
    model, kernel, bias, x, y = _apgd_test.linear()
    eps = _apgd_test.median_eps(kernel, bias, x, y, norm)
    exact = _apgd_test.exact_linear_accuracy(kernel, bias, x, y, eps, norm)
    result = _fab.fab_targeted(model, x, y, eps, norm, steps=8,
                               progress=False)
    # The linearisation is exact: every example within eps of a class
    # boundary is found (the ranked targets cover all 9 other classes), and
    # nothing beyond eps counts.
    assert result.accuracy == pytest.approx(exact, abs=1.01 / len(x))
    assert result.accuracy >= exact
    fooled = ~result.robust
    delta = (result.x_adv - x).reshape(len(x), -1)
    size = (np.abs(delta).max(1) if norm == "infinity"
            else np.linalg.norm(delta, axis=1))
    assert size[fooled].max() <= eps * (1 + 1e-5)
    assert np.all(np.argmax(model.predict_on_batch(result.x_adv[fooled]),
                            -1) != y[fooled])
    # The probability model gives the same result (g on log-probabilities).
    prob, _, _, _, _ = _apgd_test.linear(probabilities=True)
    again = _fab.fab_targeted(prob, x, y, eps, norm, steps=8,
                              progress=False)
    assert abs(again.accuracy - result.accuracy) <= 1.01 / len(x)


def test_fab_t_in_a_box_restarts_subsets_and_determinism():
    model, x, y = _apgd_test.mlp()
    eps = 0.08
    first = _fab.fab_targeted(model, x, y, eps, clip=(0.0, 1.0), steps=8,
                              n_target_classes=3, restarts=2, seed=4,
                              progress=False)
    again = _fab.fab_targeted(model, x, y, eps, clip=(0.0, 1.0), steps=8,
                              n_target_classes=3, restarts=2, seed=4,
                              progress=False)
    np.testing.assert_array_equal(first.x_adv, again.x_adv)
    np.testing.assert_array_equal(first.robust, again.robust)
    assert 0.1 < first.accuracy < first.clean_accuracy
    assert first.x_adv.min() >= 0 and first.x_adv.max() <= 1
    assert np.abs(first.x_adv - x).max() <= eps + 1e-6
    # Two evaluations per iteration, plus the clean predictions and checks.
    assert first.evaluations >= 2 * 8
    subset = np.arange(len(x)) < 30
    part = _fab.fab_targeted(model, x, y, eps, clip=(0.0, 1.0), steps=5,
                             n_target_classes=1, progress=False,
                             robust=subset)
    assert not part.robust[~subset].any()
    np.testing.assert_array_equal(part.x_adv[~subset], x[~subset])


def test_progress_bar_and_invalid_arguments(capsys):
    model, _, _, x, y = _apgd_test.linear()
    _fab.fab_targeted(model, x, y, 1e-4, steps=3, n_target_classes=2,
                      progress=True, batch_size=60)
    err = capsys.readouterr().err
    assert "FAB-T Linf eps=0.0001" in err and "12/12" in err
    with pytest.raises(ValueError, match="norm"):
        _fab.fab_targeted(model, x, y, 0.1, "l1")
    with pytest.raises(ValueError, match="alpha_max"):
        _fab.fab_targeted(model, x, y, 0.1, alpha_max=0.0)
    with pytest.raises(ValueError, match="eta"):
        _fab.fab_targeted(model, x, y, 0.1, eta=0.5)
