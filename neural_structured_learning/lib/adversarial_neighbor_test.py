"""Tests for adversarial_neighbor.py against NSL 1.4's vectors (§9.2 A).

Setup of most vectors: linear regression `x = [[-1, 1]]`, `w = [[3], [4]]`,
`y = 0`, loss `(y - x w)^2`, so the input gradient is `[6, 8]`, whose L2
direction is `[0.6, 0.8]`.
"""

import keras
import numpy as np
import pytest
from keras import ops

from neural_structured_learning import configs
from neural_structured_learning._testing import assert_allclose
from neural_structured_learning._testing import to_numpy
from neural_structured_learning.lib import adversarial_neighbor as adv

BACKEND = keras.config.backend()
W = np.array([[3.], [4.]], "float32")
X = np.array([[-1., 1.]], "float32")


def model_fn(x):
    return ops.matmul(x, W)


def loss_fn(labels, predictions):
    return ops.sum(ops.square(labels - predictions))


def labeled_loss(x):
    return loss_fn(0.0, model_fn(x))


def const(values):
    # Backend tensors: a torch tensor times a NumPy array fails.
    return ops.convert_to_tensor(np.array(values, "float32"))


def config(**kwargs):
    kwargs.setdefault("adv_step_size", 0.1)
    return configs.AdvNeighborConfig(**kwargs)


def generate(features, loss, cfg, **kwargs):
    neighbor, weight = adv.gen_adv_neighbor(features, loss, cfg, **kwargs)
    assert_allclose(weight, np.ones((np.shape(
        to_numpy(keras.tree.flatten(features)[0]))[0], 1)))
    return neighbor


class TestSingleTensor:

    def test_fgsm_l2(self):  # A1
        assert_allclose(generate(X, labeled_loss, config(feature_mask=1.0)),
                        [[-0.94, 1.08]], rtol=1e-5)

    def test_pgd_without_projection_radius(self):  # A2
        # 1.4 allowed PGD without pgd_epsilon; here a large radius does it.
        cfg = config(pgd_iterations=2, pgd_epsilon=1.0)
        out = generate(X, None, cfg, pgd_model_fn=model_fn,
                       pgd_loss_fn=loss_fn, pgd_labels=0.0)
        assert_allclose(out, [[-0.88, 1.16]], rtol=1e-5)

    def test_pgd_projected(self):  # A3
        cfg = config(pgd_iterations=2, pgd_epsilon=0.15)
        out = generate(X, labeled_loss, cfg, pgd_model_fn=model_fn,
                       pgd_loss_fn=loss_fn, pgd_labels=0.0,
                       use_while_loop=True)
        assert_allclose(out, [[-0.91, 1.12]], rtol=1e-5)
        # A loss function alone drives PGD too.
        assert_allclose(generate(X, labeled_loss, cfg), [[-0.91, 1.12]],
                        rtol=1e-5)

    def test_unlabeled_batch_inside_compiled_function(self):  # A8, A9
        x = np.array([[1., 1.], [0., 0.], [-1., -1.]], "float32")

        def loss(features):
            return ops.sum(model_fn(features))

        fgsm = generate(x, loss, config())
        assert_allclose(fgsm, [[1.06, 1.08], [.06, .08], [-.94, -.92]],
                        rtol=1e-5)
        pgd = generate(x, loss, config(pgd_iterations=2, pgd_epsilon=0.15))
        assert_allclose(pgd, [[1.09, 1.12], [.09, .12], [-.91, -.88]],
                        rtol=1e-5)

    def test_disconnected_loss_leaves_input(self):  # A10
        x = np.array([[1.]], "float32")
        out = generate(x, lambda f: ops.sum(f) * 0.0 + 1.0,
                       configs.AdvNeighborConfig())
        assert_allclose(out, x)

    def test_pgd_iterations_zero_still_steps(self):  # A19
        x = np.array([[1., 1.]], "float32")
        out = generate(x, lambda f: ops.sum(f * const([3., 4.])),
                       config(pgd_iterations=0))
        assert_allclose(out, [[1.06, 1.08]], rtol=1e-5)

    def test_clipping(self):  # A13
        x = np.array([[0., 1.]], "float32")
        out = generate(
            x, lambda f: ops.sum(f * const([-1., 1.])),
            config(clip_value_min=0.0, clip_value_max=1.0))
        assert_allclose(out, [[0., 1.]])

    def test_random_init_stays_in_ball(self):  # A18
        x = np.array([[0., 100., 200., 300.]], "float32")
        cfg = config(pgd_iterations=0, pgd_epsilon=10.0, random_init=True)
        out = to_numpy(generate(x, labeled_loss_4, cfg, seed=3))
        delta = np.linalg.norm(out - x)
        assert 0 < delta <= 10.0 + 1e-4

    def test_l1_and_infinity_norms(self):
        # Gradient [6, 8]: L1 puts the whole step on the largest entry.
        assert_allclose(generate(X, labeled_loss, config(adv_grad_norm="l1")),
                        [[-1.0, 1.1]], rtol=1e-5)
        assert_allclose(
            generate(X, labeled_loss, config(adv_grad_norm="infinity")),
            [[-0.9, 1.1]], rtol=1e-5)


def labeled_loss_4(x):
    return ops.sum(x * const([1., 2., 3., 4.]))


class TestStructures:

    def test_list(self):  # A4
        x = [np.array([[-1.]], "float32"), np.array([[1.]], "float32")]

        def model(xs):
            return xs[0] * 3.0 + xs[1] * 4.0

        def loss(xs):
            return loss_fn(0.0, model(xs))

        out = generate(x, loss, config())
        assert isinstance(out, list)
        assert_allclose(out, [[[-0.94]], [[1.08]]], rtol=1e-5)
        out = generate(x, loss, config(pgd_iterations=2, pgd_epsilon=1.0))
        assert_allclose(out, [[[-0.88]], [[1.16]]], rtol=1e-5)

    def dict_model(self, features):
        x = ops.concatenate([features["fc1"], features["fc2"]], axis=1)
        out = ops.matmul(x, W)
        if "fc_int" in features:
            out = out + ops.cast(features["fc_int"], "float32")
        return out

    def test_dict(self):  # A5, A6
        x = {"fc1": np.array([[-1.]], "float32"),
             "fc2": np.array([[1.]], "float32"),
             "fc_unused": np.array([[0.]], "float32")}

        def loss(features):
            return loss_fn(0.0, self.dict_model(features))

        out = generate(x, loss, config(feature_mask={}))
        assert_allclose(out, {"fc1": [[-0.94]], "fc2": [[1.08]],
                              "fc_unused": [[0.]]}, rtol=1e-5)
        out = generate(x, loss, config(pgd_iterations=2, pgd_epsilon=0.13))
        assert_allclose(out, {"fc1": [[-0.922]], "fc2": [[1.104]],
                              "fc_unused": [[0.]]}, rtol=1e-5)

    def test_integer_feature_passes_through(self):  # A7
        x = {"fc1": np.array([[-1.]], "float32"),
             "fc2": np.array([[1.]], "float32"),
             "fc_int": np.array([[2]], "int32")}

        def loss(features):
            return loss_fn(0.0, self.dict_model(features))

        with pytest.warns(UserWarning, match=r"Cannot perturb features "
                                             r"\['fc_int'\]"):
            out = generate(x, loss, config())
        assert_allclose(out, {"fc1": [[-0.94]], "fc2": [[1.08]],
                              "fc_int": [[2]]}, rtol=1e-5)
        with pytest.raises(ValueError, match=r"Cannot perturb features "
                                             r"\['fc_int'\]"):
            adv.gen_adv_neighbor(x, loss, config(),
                                 raise_invalid_gradient=True)

    def test_joint_l2_norm_over_ranks(self):  # A11, A12
        x = {"f1": np.zeros((2, 2, 2, 3), "float32"),
             "f2": np.zeros((2, 2, 2), "float32")}

        def loss(features):
            return ops.sum(features["f1"]) + ops.sum(features["f2"])

        out = generate(x, loss, config())  # 16 elements: norm 4.
        assert_allclose(out, {"f1": np.full((2, 2, 2, 3), .025),
                              "f2": np.full((2, 2, 2), .025)}, rtol=1e-5)
        out = generate(x, loss, config(pgd_iterations=2, pgd_epsilon=0.15))
        assert_allclose(out, {"f1": np.full((2, 2, 2, 3), .0375),
                              "f2": np.full((2, 2, 2), .0375)}, rtol=1e-5)

    def test_per_feature_clipping(self):  # A14, A15
        f1 = np.arange(12, dtype="float32").reshape(1, 2, 2, 3) / 10
        f2 = np.array([[[0., .33], [.66, 1.]]], "float32")
        x = {"f1": f1, "f2": f2}

        def loss(features):
            return ops.sum(features["f1"]) - ops.sum(features["f2"])

        cfg = dict(adv_step_size=0.5, adv_grad_norm="infinity",
                   clip_value_min={"f2": 0.0}, clip_value_max={"f1": 1.0})
        out = generate(x, loss, configs.AdvNeighborConfig(**cfg))
        assert_allclose(out, {"f1": np.minimum(f1 + .5, 1),
                              "f2": np.maximum(f2 - .5, 0)}, rtol=1e-5)
        cfg.update(adv_step_size=0.3, pgd_iterations=2, pgd_epsilon=0.4)
        out = generate(x, loss, configs.AdvNeighborConfig(**cfg))
        assert_allclose(out, {"f1": np.minimum(f1 + .4, 1),
                              "f2": np.maximum(f2 - .4, 0)}, rtol=1e-5)

    def test_scalar_clip_applies_to_dict_inputs(self):  # A20
        # NSL 1.4 silently ignored scalar bounds on dict inputs and returned
        # [[-0.5, 1.5]]; the bound now applies to every feature.
        x = {"f": np.array([[0., 1.]], "float32")}

        def loss(features):
            return ops.sum(features["f"] * const([-1., 1.]))

        for lo, hi in ((0.0, 1.0), ({"f": 0.0}, {"f": 1.0})):
            cfg = configs.AdvNeighborConfig(
                adv_step_size=0.5, adv_grad_norm="infinity",
                clip_value_min=lo, clip_value_max=hi)
            assert_allclose(generate(x, loss, cfg), {"f": [[0., 1.]]})


class TestErrors:

    def test_pgd_needs_a_loss_function(self):
        x = ops.convert_to_tensor(X)
        with pytest.raises(ValueError, match="Both pgd_model_fn and "
                                             "pgd_loss_fn have to be "
                                             "specified"):
            adv.gen_adv_neighbor(x, ops.sum(x), config(
                pgd_iterations=2, pgd_epsilon=0.1))

    @pytest.mark.parametrize("field, value, match", [
        ("feature_mask", {"missing": 1.0},
         r"`feature_mask` has keys \['missing'\] that are not features\. "
         r"Features: \['a', 'b'\]"),
        ("clip_value_min", [0.0, 0.0],
         r"`clip_value_min` is a list, but the features are a dict"),
        ("clip_value_max", {"b": 1.0},
         r"`clip_value_max` names feature 'b', which cannot be perturbed: "
         r"its dtype is int32"),
    ])
    def test_constraint_structure(self, field, value, match):
        x = {"a": np.zeros((1, 2), "float32"), "b": np.zeros((1, 1), "int32")}
        with pytest.raises(ValueError, match=match):
            adv.gen_adv_neighbor(x, lambda f: ops.sum(f["a"]),
                                 config(**{field: value}))

    def test_list_constraint_length(self):
        x = [np.zeros((1, 2), "float32"), np.zeros((1, 1), "float32")]
        with pytest.raises(ValueError, match=r"`feature_mask` has 3 entries "
                                             r"but there are 2 features"):
            adv.gen_adv_neighbor(x, lambda f: ops.sum(f[0]),
                                 config(feature_mask=[1., 1., 1.]))


class TestNonFiniteGradients:

    x = np.array([[0., 4.]], "float32")

    @staticmethod
    def loss(features):  # d sqrt(x) / dx is +inf at 0.
        return ops.sum(ops.sqrt(features))

    def test_zeroed_by_default(self):
        out = generate(self.x, self.loss, config(adv_grad_norm="infinity"))
        assert_allclose(out, [[0., 4.1]], rtol=1e-6)

    def test_raise(self):
        cfg = config(nonfinite_gradient="raise")
        with pytest.raises(Exception, match="NaN or Inf"):
            to_numpy(adv.gen_adv_neighbor(self.x, self.loss, cfg)[0])


def test_tape_form_per_backend():
    """1.4's form: a computed loss plus the means to differentiate it."""
    cfg = config()
    if BACKEND == "tensorflow":
        import tensorflow as tf
        x = tf.constant(X)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = labeled_loss(x)
        out, _ = adv.gen_adv_neighbor(x, loss, cfg, gradient_tape=tape)
        assert_allclose(out, [[-0.94, 1.08]], rtol=1e-5)
        with pytest.raises(ValueError, match="`gradient_tape` is required"):
            adv.gen_adv_neighbor(x, loss, cfg)
    elif BACKEND == "torch":
        import torch
        x = torch.tensor(X, requires_grad=True)
        out, _ = adv.gen_adv_neighbor(x, labeled_loss(x), cfg)
        assert_allclose(out, [[-0.94, 1.08]], rtol=1e-5)
    else:
        x = ops.convert_to_tensor(X)
        with pytest.raises(ValueError, match="JAX cannot differentiate an "
                                             "already computed loss"):
            adv.gen_adv_neighbor(x, labeled_loss(x), cfg)
