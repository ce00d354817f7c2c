"""Tests for configs.py: 1.4's fields, defaults and factories, plus validation."""

import json
import sys

import attr
import pytest

from neural_structured_learning import configs


def test_no_framework_imported():
    # configs must stay plain Python: importable without Keras or a backend.
    for name in ("keras", "tensorflow", "jax", "torch"):
        if name in sys.modules:
            pytest.skip(f"{name} already imported by another test")
    assert configs.AdvRegConfig().multiplier == 0.2


def test_enum_values_as_in_1_4():
    assert [m.value for m in configs.NormType] == ["l1", "l2", "infinity"]
    assert [m.value for m in configs.AdvTargetType] == [
        "second", "least", "random", "ground_truth"]
    assert [m.value for m in configs.TransformType] == ["softmax", "none"]
    assert [m.value for m in configs.DistanceType] == [
        "l1", "l2", "cosine", "jensen_shannon_divergence", "kl_divergence"]
    assert [m.value for m in configs.DecayType] == [
        "exponential_decay", "inverse_time_decay", "natural_exp_decay"]
    assert [m.value for m in configs.IntegrationType] == [
        "additive", "multiplicative", "tucker_decomp"]
    assert configs.NormType.all() == list(configs.NormType)
    assert configs.NormType("l2") is configs.NormType.L2
    assert configs.NormType.L2 == "l2"  # String enums compare to values.


def test_reduction_strings_match_tf1():
    r = configs.Reduction
    assert (r.NONE, r.SUM, r.MEAN, r.SUM_OVER_BATCH_SIZE,
            r.SUM_BY_NONZERO_WEIGHTS) == (
                "none", "weighted_sum", "weighted_mean",
                "weighted_sum_over_batch_size",
                "weighted_sum_by_nonzero_weights")
    assert r.SUM_OVER_NONZERO_WEIGHTS == r.SUM_BY_NONZERO_WEIGHTS
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        configs.DistanceConfig(reduction="average")


def test_fields_order_and_defaults():
    def fields(cls):
        return [(f.name, f.default) for f in attr.fields(cls)]

    neighbor = fields(configs.AdvNeighborConfig)
    assert neighbor[:8] == [
        ("feature_mask", None), ("adv_step_size", 0.001),
        ("adv_grad_norm", configs.NormType.L2), ("clip_value_min", None),
        ("clip_value_max", None), ("pgd_iterations", 1),
        ("pgd_epsilon", None), ("random_init", False)]
    assert [f.name for f in attr.fields(configs.GraphBuilderConfig)] == [
        "id_feature_name", "embedding_feature_name", "similarity_threshold",
        "lsh_splits", "lsh_rounds", "random_seed"]
    builder = configs.GraphBuilderConfig()
    assert (builder.similarity_threshold, builder.lsh_splits,
            builder.lsh_rounds, builder.random_seed) == (0.8, 0, 1, None)
    graph = configs.GraphRegConfig()
    assert graph.multiplier == 0.01
    assert graph.neighbor_config == configs.GraphNeighborConfig(
        "NL_nbr_", "_weight", 0)
    vat = configs.VirtualAdvConfig()
    assert (vat.num_approx_steps, vat.approx_difference) == (1, 1e-6)
    target = configs.AdvTargetConfig()
    assert target.target_method == configs.AdvTargetType.GROUND_TRUTH
    assert target.random_seed == 0.0
    decay = configs.DecayConfig(10)
    assert (decay.decay_rate, decay.min_value, decay.decay_type) == (
        0.96, 0.0, configs.DecayType.EXPONENTIAL_DECAY)


def test_positional_construction_as_in_1_4():
    config = configs.AdvNeighborConfig(None, 0.1, "infinity")
    assert config.adv_grad_norm is configs.NormType.INFINITY
    distance = configs.DistanceConfig("cosine", configs.Reduction.MEAN, -1,
                                      "softmax")
    assert distance.transform_fn is configs.TransformType.SOFTMAX


def test_default_params_dicts():
    assert configs.DEFAULT_DISTANCE_PARAMS == {
        "distance_type": configs.DistanceType.L2,
        "reduction": "weighted_sum_by_nonzero_weights",
        "sum_over_axis": None,
        "transform_fn": configs.TransformType.NONE}
    assert configs.DEFAULT_ADVERSARIAL_PARAMS == {
        "feature_mask": None, "adv_step_size": 0.001,
        "adv_grad_norm": configs.NormType.L2, "clip_value_min": None,
        "clip_value_max": None, "pgd_iterations": 1, "pgd_epsilon": None,
        "random_init": False}


def test_default_sub_configs_are_not_shared():
    # 1.4 shared one default instance between all configs.
    a, b = configs.AdvRegConfig(), configs.AdvRegConfig()
    assert a.adv_neighbor_config is not b.adv_neighbor_config
    a.adv_neighbor_config.adv_step_size = 0.5
    assert configs.AdvRegConfig().adv_neighbor_config.adv_step_size == 0.001


def test_make_adv_reg_config():
    config = configs.make_adv_reg_config(
        multiplier=0.3, adv_step_size=0.2, adv_grad_norm="infinity",
        clip_value_min=0.0, clip_value_max=1.0, pgd_iterations=3,
        pgd_epsilon=0.3, random_init=True)
    assert config == configs.AdvRegConfig(
        0.3, configs.AdvNeighborConfig(
            None, 0.2, configs.NormType.INFINITY, 0.0, 1.0, 3, 0.3, True))
    assert configs.make_adv_reg_config() == configs.AdvRegConfig()


def test_make_graph_reg_config():
    config = configs.make_graph_reg_config(
        max_neighbors=2, multiplier=0.1, distance_type="cosine",
        sum_over_axis=-1)
    assert config.neighbor_config == configs.GraphNeighborConfig(
        "NL_nbr_", "_weight", 2)
    assert config.distance_config == configs.DistanceConfig(
        configs.DistanceType.COSINE,
        configs.Reduction.SUM_BY_NONZERO_WEIGHTS, -1, "none")
    assert config.multiplier == 0.1


@pytest.mark.parametrize("config", [
    configs.make_adv_reg_config(feature_mask={"a": 0.5, "b": None},
                                clip_value_min=[0.0, None],
                                adv_grad_norm="l1"),
    configs.make_graph_reg_config(max_neighbors=3, sum_over_axis=-1),
    configs.VirtualAdvConfig(num_approx_steps=2, approx_difference=0.1),
    configs.GraphBuilderConfig(lsh_splits=4, random_seed=3),
    configs.DecayConfig(5, decay_type="natural_exp_decay"),
    configs.AdvTargetConfig("random", 1.0),
])
def test_get_config_round_trip_through_json(config):
    blob = json.dumps(config.get_config())
    assert type(config).from_config(json.loads(blob)) == config


# One instance of every config class, every field away from its default, so
# that a field `get_config` drops or `from_config` does not rebuild (a nested
# config left a dict, an enum left a string) is noticed.
_NON_DEFAULT = [
    configs.AdvNeighborConfig(
        feature_mask={"a": 0.5, "b": None}, adv_step_size=0.1,
        adv_grad_norm="l1", clip_value_min=[0.0, None],
        clip_value_max=[1.0, 2.0], pgd_iterations=3, pgd_epsilon=0.3,
        random_init=True, nonfinite_gradient="raise"),
    configs.AdvRegConfig(0.5, configs.AdvNeighborConfig(
        adv_step_size=0.2, adv_grad_norm="infinity")),
    configs.AdvTargetConfig("random", 1.0),
    configs.DistanceConfig("cosine", configs.Reduction.MEAN, -1, "softmax"),
    configs.DecayConfig(5, 0.5, 0.1, "natural_exp_decay"),
    configs.IntegrationConfig("tucker_decomp", [4, 2], "relu"),
    configs.VirtualAdvConfig(
        configs.AdvNeighborConfig(adv_step_size=2.0, adv_grad_norm="l1"),
        configs.DistanceConfig("kl_divergence", sum_over_axis=-1), 2, 0.1),
    configs.GraphBuilderConfig("node", "vector", 0.5, 4, 2, 3),
    configs.GraphNeighborConfig("nbr_", "_w", 2),
    configs.GraphRegConfig(configs.GraphNeighborConfig(max_neighbors=3),
                           0.1, configs.DistanceConfig("l1"),
                           configs.ContrastiveConfig(0.2)),
    configs.GraphRegConfig(configs.GraphNeighborConfig(max_neighbors=3),
                           propagation_config=configs.PropagationConfig(0.3)),
    configs.ContrastiveConfig(0.1),
    configs.PropagationConfig(0.2, 0.7),
]


def _config_classes():
    """Every attrs config class defined in or exported by `nsl.configs`."""
    found = {obj for module in (configs, configs.configs)
             for obj in vars(module).values()
             if isinstance(obj, type) and attr.has(obj)}
    return sorted(found, key=lambda cls: cls.__name__)


def test_every_config_class_is_exported_and_has_a_round_trip_case():
    classes = _config_classes()
    assert len(classes) >= 10
    assert {cls.__name__ for cls in classes} <= set(configs.__all__)
    assert {type(c) for c in _NON_DEFAULT} == set(classes)


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda c: c.__name__)
def test_from_config_get_config_round_trips(cls):
    # Every field differs from its default in one of the class's cases (two
    # GraphRegConfig cases: its contrastive and propagation losses exclude
    # each other).
    cases = [c for c in _NON_DEFAULT if type(c) is cls]
    for field in attr.fields(cls):
        if field.default is not attr.NOTHING:
            default = (field.default.factory()
                       if isinstance(field.default, attr.Factory)
                       else field.default)
            assert any(getattr(config, field.name) != default
                       for config in cases), field.name
    for config in cases:
        blob = config.get_config()
        rebuilt = cls.from_config(json.loads(json.dumps(blob)))
        assert type(rebuilt) is cls
        assert rebuilt == config
        assert rebuilt.get_config() == blob
        for field in attr.fields(cls):  # Same types: enums, nested configs.
            assert (type(getattr(rebuilt, field.name))
                    is type(getattr(config, field.name))), field.name
    # Defaults too, where every field has one.
    if all(f.default is not attr.NOTHING for f in attr.fields(cls)):
        assert cls.from_config(json.loads(json.dumps(
            cls().get_config()))) == cls()


def test_array_constraints_serialise():
    np = pytest.importorskip("numpy")
    config = configs.AdvNeighborConfig(feature_mask=np.array([0.0, 1.0]))
    assert json.loads(json.dumps(config.get_config()))["feature_mask"] == [
        0.0, 1.0]


@pytest.mark.parametrize("kwargs, match", [
    (dict(adv_grad_norm="l3"),
     r"`adv_grad_norm` must be one of 'l1', 'l2', 'infinity'\. Received: "
     r"adv_grad_norm='l3'"),
    (dict(pgd_iterations=2),
     r"`pgd_epsilon` must be set when `pgd_iterations > 1`"),
    (dict(multiplier=-0.1), r"`multiplier` must be >= 0\. Received: "
                            r"multiplier=-0.1"),
    (dict(adv_step_size=-1.0), r"`adv_step_size` must be >= 0"),
    (dict(pgd_iterations=1.5), r"`pgd_iterations` must be an integer >= 0"),
    (dict(pgd_epsilon=0.0), r"`pgd_epsilon` must be > 0"),
    (dict(nonfinite_gradient="ignore"),
     r"`nonfinite_gradient` must be 'zero' or 'raise'"),
])
def test_make_adv_reg_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        configs.make_adv_reg_config(**kwargs)


def test_other_configs_reject_bad_values():
    with pytest.raises(ValueError, match=r"`distance_type` must be one of"):
        configs.DistanceConfig(distance_type="euclidean")
    with pytest.raises(ValueError, match=r"`approx_difference`.*> 0"):
        configs.VirtualAdvConfig(approx_difference=0.0)
    with pytest.raises(ValueError, match=r"`multiplier` must be >= 0"):
        configs.make_graph_reg_config(multiplier=-1.0)
    with pytest.raises(ValueError, match=r"`max_neighbors` must be an "
                                         r"integer >= 0"):
        configs.GraphNeighborConfig(max_neighbors=-1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(adv_step_size=float("inf")),
     r"`adv_step_size` must be a finite number >= 0\. Received: "
     r"adv_step_size=inf"),
    (dict(adv_step_size=float("nan")),
     r"`adv_step_size` must be a finite number >= 0\. Received: "
     r"adv_step_size=nan"),
    (dict(adv_step_size="0.1"),
     r"`adv_step_size` must be a finite number >= 0\. Received: "
     r"adv_step_size='0.1'"),
    (dict(multiplier=float("inf")), r"`multiplier` must be a finite number"),
    (dict(multiplier="x"), r"`multiplier` must be a finite number"),
    (dict(pgd_epsilon=float("nan"), pgd_iterations=2),
     r"`pgd_epsilon` must be a number > 0 \(or None\)\. Received: "
     r"pgd_epsilon=nan"),
    (dict(pgd_epsilon="big"), r"`pgd_epsilon` must be a number > 0"),
    (dict(pgd_iterations=True), r"`pgd_iterations` must be an integer"),
    (dict(feature_mask="abc"),
     r"`feature_mask` must be None, a number or an array/tensor of numbers, "
     r"or a dict \(by feature name\) or list \(by position\) of them \(masks "
     r"in \[0, 1\]\)\. Received: feature_mask='abc'"),
    (dict(feature_mask={"a": "abc"}),
     r"`feature_mask\['a'\]` must be None, a number or an array"),
    (dict(feature_mask=[None, "abc"]), r"`feature_mask\[1\]` must be None"),
    (dict(feature_mask=1.5), r"`feature_mask` values must be in \[0, 1\]"),
    (dict(feature_mask=float("nan")), r"`feature_mask` must not be NaN"),
    (dict(clip_value_min="0"), r"`clip_value_min` must be None, a number"),
    (dict(clip_value_max={"x": object()}),
     r"`clip_value_max\['x'\]` must be None, a number"),
    (dict(clip_value_min=1.0, clip_value_max=0.0),
     r"`clip_value_min` must be <= `clip_value_max`\. Received: "
     r"clip_value_min=1.0, clip_value_max=0.0"),
    (dict(clip_value_min={"a": 0.0, "b": 2.0},
          clip_value_max={"a": 1.0, "b": 1.0}),
     r"`clip_value_min` must be <= `clip_value_max` for feature 'b'\. "
     r"Received: clip_value_min=2.0, clip_value_max=1.0"),
    (dict(clip_value_min=[0.0, 5.0], clip_value_max=[1.0, 1.0]),
     r"`clip_value_min` must be <= `clip_value_max`\. Received: "
     r"clip_value_min=\[0.0, 5.0\]"),
    (dict(clip_value_min=[None, 5.0], clip_value_max=[None, 1.0]),
     r"`clip_value_min` must be <= `clip_value_max` for feature 1"),
    (dict(clip_value_min=2.0, clip_value_max={"a": 1.0}),
     r"`clip_value_min` must be <= `clip_value_max` for feature 'a'"),
])
def test_adv_config_rejects_bad_values_naming_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        configs.make_adv_reg_config(**kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(feature_mask={}, clip_value_min={"a": None, "b": 0.0},
         clip_value_max={"b": 1.0, "c": -1.0}),
    dict(feature_mask=[1.0, 0.0], clip_value_min=[0.0, -1.0],
         clip_value_max=[1.0, 1.0]),
    dict(feature_mask=[None, [1.0, 0.0]]),
    dict(feature_mask=0, adv_step_size=0, pgd_iterations=0,
         pgd_epsilon=float("inf")),
    dict(clip_value_min=0.0, clip_value_max=0.0),
])
def test_adv_config_accepts_what_1_4_accepts(kwargs):
    configs.make_adv_reg_config(**kwargs)


def test_array_bounds_are_checked_elementwise():
    np = pytest.importorskip("numpy")
    configs.AdvNeighborConfig(clip_value_min=np.zeros(2),
                              clip_value_max=np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="`clip_value_min` must be <="):
        configs.AdvNeighborConfig(clip_value_min=np.array([0.0, 2.0]),
                                  clip_value_max=np.ones(2))
    with pytest.raises(ValueError, match=r"`feature_mask` values must be"):
        configs.AdvNeighborConfig(feature_mask=np.array([-0.5, 1.0]))


def test_distance_and_other_configs_reject_bad_values():
    with pytest.raises(ValueError, match=r"`sum_over_axis` must be None or "
                                         r"an int \(an axis\)\. Received: "
                                         r"sum_over_axis='x'"):
        configs.DistanceConfig(sum_over_axis="x")
    with pytest.raises(ValueError, match=r"`sum_over_axis` must be None"):
        configs.make_graph_reg_config(sum_over_axis=1.0)
    configs.DistanceConfig(sum_over_axis=-1)
    with pytest.raises(ValueError, match=r"`approx_difference` must be a "
                                         r"finite number\. Received: "
                                         r"approx_difference='1e-6'"):
        configs.VirtualAdvConfig(approx_difference="1e-6")
    with pytest.raises(ValueError, match=r"`decay_steps` must be > 0\. "
                                         r"Received: decay_steps=0"):
        configs.DecayConfig(decay_steps=0)
    with pytest.raises(ValueError, match=r"`decay_rate` must be a finite "
                                         r"number"):
        configs.DecayConfig(decay_steps=10, decay_rate=float("nan"))
    configs.DecayConfig(10, 0.5, 0.1)


def test_contrastive_graph_config():
    # NSL 1.4's config is unchanged unless a contrastive loss is asked for.
    assert configs.GraphRegConfig().contrastive_config is None
    assert configs.make_graph_reg_config().contrastive_config is None
    config = configs.make_graph_reg_config(max_neighbors=2,
                                           contrastive_temperature=0.3)
    assert config.contrastive_config == configs.ContrastiveConfig(0.3)
    old = {"neighbor_config": configs.GraphNeighborConfig().get_config(),
           "multiplier": 0.5,
           "distance_config": configs.DistanceConfig().get_config()}
    assert configs.GraphRegConfig.from_config(old).contrastive_config is None
    with pytest.raises(ValueError, match="`temperature` must be"):
        configs.ContrastiveConfig(0.0)
    with pytest.raises(TypeError, match="`contrastive_config` must be None"):
        configs.GraphRegConfig(contrastive_config=0.5)


def test_propagation_graph_config():
    assert configs.GraphRegConfig().propagation_config is None
    assert configs.make_graph_reg_config().propagation_config is None
    config = configs.make_graph_reg_config(max_neighbors=10,
                                           propagation_self_weight=0.3)
    assert config.propagation_config == configs.PropagationConfig(0.3, 0.5)
    assert configs.GraphRegConfig.from_config(
        config.get_config()) == config
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="`self_weight` must"):
            configs.PropagationConfig(bad)
    with pytest.raises(ValueError, match="`temperature` must be"):
        configs.PropagationConfig(0.1, 0.0)
    with pytest.raises(TypeError, match="`propagation_config` must be None"):
        configs.GraphRegConfig(propagation_config=0.5)
    with pytest.raises(ValueError, match="at most one"):
        configs.make_graph_reg_config(contrastive_temperature=0.5,
                                      propagation_self_weight=0.1)
