"""Tests for utils.py.

Expected values are NSL 1.4's test vectors (reference §9.2 B) unless a comment
says how they were computed.
"""

import keras
import numpy as np
import pytest
from keras import ops

from neural_structured_learning import configs
from neural_structured_learning._testing import assert_allclose
from neural_structured_learning._testing import to_numpy
from neural_structured_learning.lib import utils


def f32(x):
    return np.asarray(x, dtype="float32")


class TestNormalize:

    def test_infinity(self):
        assert_allclose(
            utils.normalize(f32([[1, 2, -4], [-1, 5, -3]]), "infinity"),
            [[.25, .5, -1], [-.2, 1, -.6]])

    @pytest.mark.parametrize("norm, value", [("l1", .25), ("l2", .5),
                                             ("infinity", 1.)])
    def test_ones(self, norm, value):
        assert_allclose(utils.normalize(np.ones((2, 4), "float32"), norm),
                        np.full((2, 4), value))

    @pytest.mark.parametrize("norm", ["l1", "l2", "infinity"])
    def test_zeros_stay_zero(self, norm):
        assert_allclose(utils.normalize(np.zeros((2, 3), "float32"), norm),
                        np.zeros((2, 3)))

    def test_unknown_norm(self):
        with pytest.raises(ValueError, match="`norm_type` must be one of"):
            utils.normalize(f32([[1.]]), "l3")


class TestMaximizeWithinUnitNorm:

    def test_infinity(self):
        assert_allclose(
            utils.maximize_within_unit_norm(f32([[1, 2, -4], [-1, 5, -3]]),
                                            "infinity"),
            [[1, 1, -1], [-1, 1, -1]])

    def test_l1_splits_ties(self):
        assert_allclose(
            utils.maximize_within_unit_norm(f32([[3, -4, -5], [1, 1, 0]]),
                                            "l1"),
            [[0, 0, -1], [.5, .5, 0]])
        out = utils.maximize_within_unit_norm({"w": f32([[3, -4], [-4, 4]])},
                                              configs.NormType.L1)
        assert_allclose(out, {"w": [[0, -1], [-.5, .5]]})

    def test_l2(self):
        assert_allclose(
            utils.maximize_within_unit_norm(f32([[3, -4], [-7, 24]]), "l2"),
            [[.6, -.8], [-.28, .96]])

    def test_l2_is_joint_over_tensors(self):
        out = utils.maximize_within_unit_norm(
            {"w1": f32([[1, 2], [-4, 4]]), "w2": f32([[-2], [-7]])}, "l2")
        assert_allclose(out, {"w1": [[1 / 3, 2 / 3], [-4 / 9, 4 / 9]],
                              "w2": [[-2 / 3], [-7 / 9]]}, rtol=1e-5)

    @pytest.mark.parametrize("norm", ["l1", "l2", "infinity"])
    def test_zeros(self, norm):
        assert_allclose(
            utils.maximize_within_unit_norm([f32([[0, 0]]), f32([[0]])],
                                            norm),
            [[[0, 0]], [[0]]])

    def test_empty_structure(self):
        assert utils.maximize_within_unit_norm({}, "l2") == {}


class TestProjectToBall:

    @pytest.mark.parametrize("radius, factors", [
        (1., [1 / 3, 1 / 15]), (4., [1., 4 / 15]), (16., [1., 1.])])
    def test_l2_dict(self, radius, factors):
        x = f32([[1, -2, 2], [2, 10, 11]])  # Norms 3 and 15.
        out = utils.project_to_ball({"f1": x}, radius, configs.NormType.L2)
        assert_allclose(out, {"f1": x * f32(factors)[:, None]}, rtol=1e-5)

    def test_l2_list_is_joint(self):
        # Global norms 3 and 9, radius 0.9.
        out = utils.project_to_ball(
            [f32([[1, -2], [-8, 1]]), f32([[2], [-4]])], 0.9, "l2")
        assert_allclose(out, [[[.3, -.6], [-.8, .1]], [[.6], [-.4]]],
                        rtol=1e-5)

    def test_l2_multi_shape(self):
        # Example 1 has squared norm 252 + 169: factor 2 / sqrt(421).
        a = np.zeros((2, 2, 3), "float32")
        a[0, 0, 0], a[0, 1, 2] = np.sqrt(252), 0.
        b = np.zeros((2, 1), "float32")
        b[0, 0], b[1, 0] = 13., 1.
        out = utils.project_to_ball([a, b], 2., "l2")
        scale = 2 / np.sqrt(421)
        assert_allclose(out, [a * np.array([scale, 1.])[:, None, None],
                              b * np.array([scale, 1.])[:, None]], rtol=1e-5)

    def test_infinity(self):
        x = f32([[1, 2, -4]])
        assert_allclose(utils.project_to_ball(x, .5, "infinity"),
                        [[.5, .5, -.5]])
        assert_allclose(utils.project_to_ball(x, 1.5, "infinity"),
                        [[1, 1.5, -1.5]])
        assert_allclose(utils.project_to_ball(x, 5., "infinity"), x)
        assert_allclose(
            utils.project_to_ball(f32([[1, -3], [-2, 4]]), 2.5, "infinity"),
            [[1, -2.5], [-2, 2.5]])

    def test_l1(self):
        # New in this version (1.4 raised). Duchi et al.'s projection, worked
        # by hand: |v| sorted = [4, 3, 1], rho = 2, theta = (7 - 2) / 2 = 2.5.
        out = utils.project_to_ball(
            [f32([[3, -4], [.1, .2]]), f32([[1], [.3]])], 2., "l1")
        assert_allclose(out, [[[.5, -1.5], [.1, .2]], [[0.], [.3]]],
                        rtol=1e-5)

    def test_l1_matches_brute_force_property(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(5, 7)).astype("float32") * 3
        out = to_numpy(utils.project_to_ball(x, 1.5, "l1"))
        np.testing.assert_allclose(np.abs(out).sum(1), 1.5, rtol=1e-5)
        # Projection never flips signs and only shrinks magnitudes.
        assert np.all(out * x >= -1e-7) and np.all(np.abs(out) <= np.abs(x))

    @pytest.mark.parametrize("norm", ["l1", "l2", "infinity"])
    def test_zeros(self, norm):
        assert_allclose(utils.project_to_ball(np.zeros((2, 3), "float32"),
                                              1., norm), np.zeros((2, 3)))


class TestRandomInNormBall:

    @pytest.mark.parametrize("norm, order", [("l1", 1), ("l2", 2),
                                             ("infinity", np.inf)])
    def test_inside_ball(self, norm, order):
        x = [np.zeros((50, 3), "float32"), np.zeros((50, 2, 2), "float32")]
        out = to_numpy(utils.random_in_norm_ball(x, 2., norm, seed=1))
        joint = np.concatenate([o.reshape(50, -1) for o in out], axis=1)
        norms = np.linalg.norm(joint, ord=order, axis=1)
        assert np.all(norms <= 2. + 1e-5) and np.all(norms > 0)
        assert out[1].shape == (50, 2, 2)

    def test_rejects_integers_and_mixed_batches(self):
        with pytest.raises(ValueError, match="floating-point"):
            utils.random_in_norm_ball(np.zeros((2, 2), "int32"), 1., "l2")
        with pytest.raises(ValueError, match="same batch size"):
            utils.random_in_norm_ball([np.zeros((2, 1), "float32"),
                                       np.zeros((3, 1), "float32")], 1., "l2")


def test_get_target_indices():
    logits = f32([[.1, .2, .7], [.3, .5, .2]])
    labels = np.array([2, 1])

    def target(method):
        return to_numpy(utils.get_target_indices(
            logits, labels, configs.AdvTargetConfig(method)))

    np.testing.assert_array_equal(target("second"), [1, 0])
    np.testing.assert_array_equal(target("least"), [0, 2])
    np.testing.assert_array_equal(target("ground_truth"), [2, 1])
    random = target(configs.AdvTargetType.RANDOM)  # Not 1.4's TF RNG values.
    assert random.shape == (2,) and np.all((random >= 0) & (random < 3))


class TestReplicateEmbeddings:

    def test_scalar(self):
        x = np.arange(18, dtype="float32").reshape(3, 2, 3)
        assert_allclose(utils.replicate_embeddings(x, 2),
                        np.repeat(x, 2, axis=0))

    def test_vector(self):
        x = np.arange(9, dtype="float32").reshape(3, 3)
        assert_allclose(utils.replicate_embeddings(x, [3, 0, 1]),
                        [[0, 1, 2]] * 3 + [[6, 7, 8]])

    def test_negative(self):
        with pytest.raises(ValueError, match=r"`replicate_times` must be >= 0"
                                             r"\. Received: replicate_times="
                                             r"\[-1, 0, 1\]"):
            utils.replicate_embeddings(np.zeros((3, 2)), [-1, 0, 1])


@pytest.mark.parametrize("decay_type, rate, expected", [
    ("exponential_decay", .96, 0.0979796),
    ("inverse_time_decay", .9, 0.0689655),
    ("natural_exp_decay", .9, 0.0637628)])
def test_decay_over_time(decay_type, rate, expected):
    config = configs.DecayConfig(10, rate, decay_type=decay_type)
    assert_allclose(utils.decay_over_time(5, config, 0.1), expected,
                    rtol=1e-5)


def test_decay_over_time_bound_and_default():
    assert_allclose(utils.decay_over_time(
        5, configs.DecayConfig(10, min_value=.99), .1), .99)
    assert_allclose(utils.decay_over_time(5, configs.DecayConfig(10)),
                    0.9797959, rtol=1e-5)


def test_apply_feature_mask():
    features = f32([[1, 1], [2, 2]])
    assert_allclose(utils.apply_feature_mask(features, f32([0, 1])),
                    [[0, 1], [0, 2]])
    assert utils.apply_feature_mask(features, None) is features
    for bad in (-0.5, 1.5):
        with pytest.raises(ValueError, match=r"`feature_mask` values must be "
                                             r"in \[0, 1\]"):
            utils.apply_feature_mask(features, f32([0, bad]))


class TestNeighborFeatures:

    config = configs.GraphNeighborConfig(max_neighbors=3)

    def packed(self):
        feats = {"F0": np.full((2, 2), 11., "float32")}
        for i, (value, weight) in enumerate([(22, .25), (33, .75), (44, 1.)]):
            feats[f"NL_nbr_{i}_F0"] = np.full((2, 2), value, "float32")
            feats[f"NL_nbr_{i}_weight"] = np.full((2, 1), weight, "float32")
        return feats

    def test_unpack_sample_major(self):
        sample, nbrs, weights = utils.unpack_neighbor_features(
            self.packed(), self.config)
        assert_allclose(sample, {"F0": np.full((2, 2), 11.)})
        rows = np.repeat(np.array([22, 33, 44] * 2, "float32"), 2).reshape(
            6, 2)
        assert_allclose(nbrs, {"F0": rows})
        assert_allclose(weights, [[.25], [.75], [1.]] * 2)

    def test_unpack_keep_rank_false(self):
        _, nbrs, weights = utils.unpack_neighbor_features(
            self.packed(), self.config, keep_rank=False)
        assert tuple(nbrs["F0"].shape) == (2, 3, 2)
        assert tuple(weights.shape) == (2, 3, 1)

    def test_no_neighbors_and_extra_neighbors(self):
        sample, nbrs, weights = utils.unpack_neighbor_features(
            self.packed(), configs.GraphNeighborConfig(max_neighbors=0))
        assert list(sample) == ["F0"] and nbrs == {} and weights is None
        _, nbrs, _ = utils.unpack_neighbor_features(
            self.packed(), configs.GraphNeighborConfig(max_neighbors=2))
        assert tuple(nbrs["F0"].shape) == (4, 2)  # The 3rd is ignored.

    def test_missing_neighbor_feature_names_it(self):
        feats = self.packed()
        del feats["NL_nbr_2_F0"]
        with pytest.raises(KeyError, match=r"Neighbour feature 'NL_nbr_2_F0'"
                                           r" is missing: max_neighbors=3"):
            utils.unpack_neighbor_features(feats, self.config)

    def test_missing_or_bad_weight(self):
        feats = self.packed()
        del feats["NL_nbr_1_weight"]
        with pytest.raises(ValueError, match=r"Neighbour weight "
                                             r"'NL_nbr_1_weight' is missing"):
            utils.unpack_neighbor_features(feats, self.config)
        feats = self.packed()
        feats["NL_nbr_0_weight"] = np.ones((2, 2), "float32")
        with pytest.raises(ValueError, match=r"one scalar per example"):
            utils.unpack_neighbor_features(feats, self.config)

    def test_shape_mismatch(self):
        feats = self.packed()
        feats["NL_nbr_1_F0"] = np.ones((2, 3), "float32")
        with pytest.raises(ValueError, match=r"'NL_nbr_1_F0' has shape "
                                             r"\(2, 3\) but sample feature "
                                             r"'F0' has shape \(2, 2\)"):
            utils.unpack_neighbor_features(feats, self.config)

    def test_strip(self):
        assert list(utils.strip_neighbor_features(
            self.packed(), self.config)) == ["F0"]
        assert utils.strip_neighbor_features({}, self.config) == {}


def test_works_inside_compiled_function():
    # The utilities are pure keras.ops: they trace under the backend's JIT.
    @keras.ops.custom_gradient
    def identity(x):
        return x, lambda g: g

    x = ops.convert_to_tensor(f32([[3, -4]]))
    out = utils.maximize_within_unit_norm(identity(x), "l2")
    assert_allclose(out, [[.6, -.8]])


def test_old_names_still_resolve():
    # pylint: disable=import-outside-toplevel
    import neural_structured_learning as nsl
    from neural_structured_learning._core import naming
    from neural_structured_learning.lib import decay
    from neural_structured_learning.lib import masks
    from neural_structured_learning.lib import neighbors
    from neural_structured_learning.lib import norms
    from neural_structured_learning.lib import sampling
    from neural_structured_learning.lib import targets
    moved = {
        "apply_feature_mask": masks, "decay_over_time": decay,
        "get_target_indices": targets, "maximize_within_unit_norm": norms,
        "normalize": norms, "project_to_ball": norms,
        "random_in_norm_ball": sampling, "replicate_embeddings": neighbors,
        "strip_neighbor_features": neighbors,
        "unpack_neighbor_features": neighbors,
    }
    for name, module in moved.items():
        assert getattr(utils, name) is getattr(module, name)
        assert getattr(nsl.lib, name) is getattr(module, name)
    assert utils.NeighborFeatureError is neighbors.NeighborFeatureError
    assert utils.neighbor_feature_name is naming.neighbor_feature_name
    assert utils.neighbor_weight_name is naming.neighbor_weight_name
    assert set(utils.__all__) >= set(moved)
