"""Tests for _apgd.py (APGD-CE, APGD-DLR, APGD-T) on small models.

On a linear classifier `z = x K + b` without clipping, the worst case in the
ball is known in closed form: the margin over class `t` is minimised at
`x - eps * sign(w_y - w_t)` (L-inf) or `x - eps * (w_y - w_t) / ||.||_2`
(L2), so an example is robust iff, for every `t != y`,

    (w_y - w_t) . x + b_y - b_t > eps * ||w_y - w_t||_1  (L-inf; L2: _2).
"""

import keras
import numpy as np
import pytest

from neural_structured_learning.evaluation import _apgd
from neural_structured_learning.evaluation import _attacks
from neural_structured_learning.evaluation import _evaluate
from neural_structured_learning.evaluation import _fab

FEATURES, CLASSES, N = 12, 10, 100


def linear(probabilities=False):
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(FEATURES, CLASSES)).astype("float32")
    bias = rng.normal(size=(CLASSES,)).astype("float32") * 0.1
    layers = [keras.Input((FEATURES,)), keras.layers.Dense(CLASSES)]
    if probabilities:
        layers.append(keras.layers.Softmax())
    model = keras.Sequential(layers)
    model.layers[0].set_weights([kernel, bias])
    x = rng.normal(size=(N, FEATURES)).astype("float32")
    y = np.argmax(x @ kernel + bias, axis=1).astype("int32")
    return model, kernel, bias, x, y


def exact_linear_accuracy(kernel, bias, x, y, eps, norm):
    """Robust accuracy of the optimal attack on a linear model."""
    robust = np.ones(len(x), bool)
    order = 1 if norm == "infinity" else 2
    for t in range(CLASSES):
        w = kernel[:, y] - kernel[:, [t]].repeat(len(x), 1)  # (F, n)
        margin = np.sum(x.T * w, axis=0) + bias[y] - bias[t]
        slack = margin - eps * np.linalg.norm(w, ord=order, axis=0)
        robust &= (y == t) | (slack > 0)
    return robust.mean()


def median_eps(kernel, bias, x, y, norm):
    order = 1 if norm == "infinity" else 2
    best = np.full(len(x), np.inf)
    for t in range(CLASSES):
        w = kernel[:, y] - kernel[:, [t]].repeat(len(x), 1)
        margin = np.sum(x.T * w, axis=0) + bias[y] - bias[t]
        dist = margin / np.maximum(np.linalg.norm(w, ord=order, axis=0),
                                   1e-12)
        best = np.where(y == t, best, np.minimum(best, dist))
    return float(np.median(best))


@pytest.mark.parametrize("norm", ["infinity", "l2"])
def test_apgd_t_reaches_the_closed_form_optimum_of_a_linear_model(norm):
    model, kernel, bias, x, y = linear()
    eps = median_eps(kernel, bias, x, y, norm)
    exact = exact_linear_accuracy(kernel, bias, x, y, eps, norm)
    assert 0.3 < exact < 0.7
    targeted = _apgd.apgd_targeted(model, x, y, eps, norm, steps=30,
                                   progress=False)
    ce = _apgd.apgd(model, x, y, eps, norm, steps=30, progress=False)
    # No attack beats the optimum (it would have left the ball); APGD-T,
    # trying every other class, reaches it.
    assert targeted.accuracy >= exact and ce.accuracy >= exact
    assert targeted.accuracy == pytest.approx(exact, abs=1.01 / N)
    assert ce.accuracy <= exact + 0.05
    delta = (targeted.x_adv - x).reshape(N, -1)
    size = (np.abs(delta).max(1) if norm == "infinity"
            else np.linalg.norm(delta, axis=1))
    assert size.max() <= eps * (1 + 1e-5) + 1e-6
    fooled = ~targeted.robust
    assert np.all(np.argmax(model.predict_on_batch(targeted.x_adv[fooled]),
                            -1) != y[fooled])


def mlp():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(120, 16)).astype("float32")
    w = rng.normal(size=(16, 4)).astype("float32")
    y = np.argmax((x - 0.5) @ w, axis=1).astype("int32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)),
                              keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(4)])
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=40, batch_size=32, verbose=0)
    return model, x, y


def test_apgd_is_at_least_as_strong_as_pgd_and_deterministic():
    model, x, y = mlp()
    eps = 0.08
    pgd_adv = _evaluate.generate_adversarial(
        model, x, y, _attacks.pgd(eps, steps=40), clip=(0.0, 1.0))
    clean = np.argmax(model.predict_on_batch(x), -1) == y
    pgd_acc = np.mean(clean & (np.argmax(
        model.predict_on_batch(pgd_adv), -1) == y))
    standard = _apgd.apgd(model, x, y, eps, clip=(0.0, 1.0),
                          progress=False)
    targeted = _apgd.apgd_targeted(model, x, y, eps, clip=(0.0, 1.0),
                                   steps=50, progress=False)
    # Measured (TensorFlow): PGD-40 0.267, APGD-CE 0.258, APGD-T 0.242.
    # A single run's random start can cost an example (seed 3: 0.275).
    assert 0.1 < standard.accuracy <= pgd_acc + 1.01 / len(x)
    assert targeted.accuracy <= pgd_acc + 1.01 / len(x)
    first = _apgd.apgd(model, x, y, eps, clip=(0.0, 1.0), steps=40,
                       progress=False, seed=3)
    again = _apgd.apgd(model, x, y, eps, clip=(0.0, 1.0), steps=40,
                       progress=False, seed=3)
    np.testing.assert_array_equal(first.x_adv, again.x_adv)
    np.testing.assert_array_equal(first.robust, again.robust)
    assert first.clean_accuracy == pytest.approx(clean.mean())
    assert first.x_adv.min() >= 0 and first.x_adv.max() <= 1
    assert np.abs(first.x_adv - x).max() <= eps + 1e-6
    # Only still-correct examples are attacked: restricting to a subset
    # leaves the others non-robust.
    subset = np.arange(len(x)) < 30
    part = _apgd.apgd(model, x, y, eps, clip=(0.0, 1.0), steps=10,
                      progress=False, robust=subset)
    assert not part.robust[~subset].any()
    np.testing.assert_array_equal(part.x_adv[~subset], x[~subset])


def test_probability_outputs_give_the_logits_result():
    model, _, _, x, y = linear()
    prob_model, _, _, _, _ = linear(probabilities=True)
    eps = 0.3
    for run, extra in ((_apgd.apgd, {}),
                       (_apgd.apgd_targeted, {"n_target_classes": 3})):
        a = run(model, x, y, eps, steps=20, progress=False, **extra)
        b = run(prob_model, x, y, eps, steps=20, progress=False, **extra)
        assert abs(a.accuracy - b.accuracy) <= 1.01 / N


def test_progress_bar_counts_every_iteration(capsys):
    model, _, _, x, y = linear()
    _apgd.apgd(model, x, y, 0.01, steps=7, progress=True, batch_size=60)
    err = capsys.readouterr().err
    assert "APGD-CE Linf eps=0.01" in err and "14/14" in err


def test_losses_match_their_formulas():
    values = np.array([[3.0, 1.0, 0.5, -1.0], [0.0, 2.0, 1.0, 0.5]],
                      "float32")
    scores = keras.ops.convert_to_tensor(values)
    labels = keras.ops.convert_to_tensor(np.array([0, 0], "int32"))
    dlr = keras.ops.convert_to_numpy(_apgd.dlr_loss(scores, labels))
    np.testing.assert_allclose(dlr, [-(3 - 1) / (3 - 0.5),
                                     -(0 - 2) / (2 - 0.5)], rtol=1e-6)
    targeted = keras.ops.convert_to_numpy(_apgd.dlr_targeted_loss(
        scores, labels, keras.ops.convert_to_tensor(np.array([2, 1],
                                                             "int32"))))
    np.testing.assert_allclose(targeted, [-(3 - 0.5) / (3 - (0.5 - 1) / 2),
                                          -(0 - 2) / (2 - (0.5 + 0) / 2)],
                               rtol=1e-6)
    ce = keras.ops.convert_to_numpy(_apgd.ce_loss(scores, labels))
    np.testing.assert_allclose(
        ce, np.log(np.exp(values).sum(1)) - values[:, 0], rtol=1e-5)
    assert _apgd.checkpoints(100) == (22, 6, 3)


def test_invalid_arguments():
    model, _, _, x, y = linear()
    with pytest.raises(ValueError, match="norm"):
        _apgd.apgd(model, x, y, 0.1, "l1")
    with pytest.raises(ValueError, match="loss"):
        _apgd.apgd(model, x, y, 0.1, loss="margin")
    three = keras.Sequential([keras.Input((FEATURES,)),
                              keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=">= 4 classes"):
        _apgd.apgd_targeted(three, x, y % 3, 0.1)



def test_short_batches_are_padded_to_a_few_sizes_and_padding_is_dropped():
    assert [_apgd.padded_size(n, 256) for n in (1, 8, 9, 16, 17, 100, 129,
                                                256)] == [8, 8, 16, 16, 32,
                                                          128, 256, 256]
    assert _apgd.padded_size(90, 100) == 100  # Never above batch_size.
    assert _apgd.padded_size(3, 5) == 5
    # FAB-T's first run starts at x (no random draw) and, with 10 steps,
    # does not stop early, so an example's result does not depend on its
    # batch: alone (padded to 8 rows, copies of it) it gets the x_adv and
    # the flag it gets in a batch of 16 (not padded).
    model, x, y = mlp()
    x, y = x[:16], y[:16]
    kwargs = dict(clip=(0.0, 1.0), steps=10, n_target_classes=2,
                  progress=False, batch_size=16)
    whole = _fab.fab_targeted(model, x, y, 0.08, **kwargs)
    shapes = []

    def counting(v, **call_kwargs):
        shapes.append(int(v.shape[0]))
        return model(v, **call_kwargs)

    for i in (0, 5, 11):
        alone = _fab.fab_targeted(counting, x[i:i + 1], y[i:i + 1], 0.08,
                                  **kwargs)
        assert alone.x_adv.shape == (1,) + x.shape[1:]
        np.testing.assert_allclose(alone.x_adv[0], whole.x_adv[i],
                                   atol=1e-5)
        assert alone.robust[0] == whole.robust[i]
    # Each call probes the output kind on x[:batch_size] (1 row), then runs
    # at 8 rows only.
    assert shapes.count(1) == 3 and set(shapes) == {1, 8}
    assert 0 < whole.accuracy < 1
