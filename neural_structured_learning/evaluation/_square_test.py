"""Tests for _square.py (Square attack, L-infinity) on small models."""

import keras
import numpy as np
import pytest

from neural_structured_learning.evaluation import _apgd_test
from neural_structured_learning.evaluation import _square


def test_p_selection_follows_the_reference_schedule():
    p = [_square.p_selection(0.8, it, 10000)
         for it in (0, 10, 11, 50, 51, 200, 201, 500, 501, 1000, 1001, 2000,
                    2001, 4000, 4001, 6000, 6001, 8000, 8001, 9999)]
    assert p == pytest.approx(
        [0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025,
         0.0125, 0.0125, 0.8 / 128, 0.8 / 128, 0.8 / 256, 0.8 / 256,
         0.8 / 512, 0.8 / 512])
    # Rescaled to the budget: query 100 of 1000 is query 1000 of 10000.
    assert _square.p_selection(0.8, 100, 1000) == pytest.approx(0.05)


def test_square_never_beats_the_linear_optimum_and_gets_close():
    model, kernel, bias, x, y = _apgd_test.linear()
    eps = _apgd_test.median_eps(kernel, bias, x, y, "infinity")
    exact = _apgd_test.exact_linear_accuracy(
        kernel, bias, x, y, eps, "infinity")
    result = _square.square(model, x, y, eps, n_queries=300, progress=False)
    assert exact <= result.accuracy <= exact + 0.05
    assert np.abs(result.x_adv - x).max() <= eps * (1 + 1e-6)
    fooled = ~result.robust
    assert np.all(np.argmax(model.predict_on_batch(result.x_adv[fooled]),
                            -1) != y[fooled])
    again = _square.square(model, x, y, eps, n_queries=300, progress=False)
    np.testing.assert_array_equal(result.x_adv, again.x_adv)


def _image_model():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, size=(40, 6, 6, 1)).astype("float32")
    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(5)])
    model.layers[1].set_weights([rng.normal(size=(36, 5)).astype("float32"),
                                 np.zeros(5, "float32")])
    y = np.argmax(model.predict_on_batch(x), -1).astype("int32")
    return model, x, y


def test_square_on_images_respects_eps_and_clip(capsys):
    model, x, y = _image_model()
    eps = 0.1
    result = _square.square(model, x, y, eps, n_queries=50, clip=(0.0, 1.0),
                            data_format="channels_last", batch_size=25,
                            progress=True)
    err = capsys.readouterr().err
    assert "Square Linf eps=0.1" in err and "100/100" in err
    assert result.clean_accuracy == 1.0
    assert result.accuracy < 0.9
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert np.abs(result.x_adv - x).max() <= eps + 1e-6
    other = _square.square(model, x, y, eps, n_queries=50, clip=(0.0, 1.0),
                           batch_size=25, seed=1, progress=False)
    assert not np.array_equal(other.x_adv, result.x_adv)


def test_square_l2_stays_on_the_sphere_and_fools():
    model, x, y = _image_model()
    eps = 0.5
    result = _square.square(model, x, y, eps, "l2", n_queries=100,
                            data_format="channels_last", progress=False)
    assert result.accuracy < 0.9
    fooled = ~result.robust
    # Unclipped, the fooling points lie on the sphere (the others are x).
    delta = (result.x_adv - x).reshape(len(x), -1)
    np.testing.assert_allclose(np.linalg.norm(delta[fooled], axis=1), eps,
                               rtol=1e-4)
    np.testing.assert_array_equal(delta[~fooled], 0)
    assert np.all(np.argmax(model.predict_on_batch(result.x_adv[fooled]),
                            -1) != y[fooled])
    # The pattern: +rectangles on top, -rectangles below, unit norm.
    pattern = _square.eta(5, transpose=False)
    assert np.linalg.norm(pattern) == pytest.approx(1.0)
    assert (pattern[:2] > 0).all() and (pattern[2:] < 0).all()


def test_square_rejects_odd_norms_and_shapes():
    model, x, y = _image_model()
    with pytest.raises(ValueError, match="norm"):
        _square.square(model, x, y, 0.1, "l1")
    small = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(5)])
    with pytest.raises(ValueError, match="at least 5 x 5"):
        _square.square(small, x[:, :4, :4], y, 0.1, "l2")
    flat = keras.Sequential([keras.Input((2, 2, 2, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="Square attack needs inputs"):
        _square.square(flat, np.zeros((2, 2, 2, 2, 1), "float32"),
                       np.zeros(2, "int32"), 0.1)
