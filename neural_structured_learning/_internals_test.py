"""Pins every private framework API the library uses (`_internals.py`).

Each test checks the behaviour the library relies on, so a Keras (or
TensorFlow, JAX) release that moves or changes one fails here, by name.
`scripts/test.sh` also runs this file against the oldest supported Keras.
"""

import keras
import numpy as np
from keras import ops

from neural_structured_learning import _internals

BACKEND = keras.config.backend()


def test_get_stateless_scope_and_the_scope_fields_used():
    assert _internals.get_stateless_scope() is None
    variable = keras.Variable(np.zeros(2, "float32"))
    with keras.StatelessScope(collect_losses=True) as scope:
        assert _internals.get_stateless_scope() is scope
        # `lib/_scopes.py` reads and writes these fields.
        assert isinstance(scope.state_mapping, dict)
        assert scope.collect_losses is True
        assert isinstance(scope.losses, list)
        variable.assign(np.ones(2, "float32"))
        assert id(variable) in scope.state_mapping  # Keyed by id().
    np.testing.assert_allclose(ops.convert_to_numpy(variable.value), 0.0)


def test_flatten_layers_includes_nested_layers_and_the_model():
    inner = keras.Sequential([keras.layers.Dense(2)])
    model = keras.Sequential([keras.Input((3,)), inner,
                              keras.layers.BatchNormalization()])
    layers = _internals.flatten_layers(model)
    assert model in layers and inner in layers
    assert inner.layers[0] in layers
    assert any(isinstance(l, keras.layers.BatchNormalization)
               for l in layers)


def test_aggregate_additional_loss_sums_an_activity_regularizer():
    model = keras.Sequential([
        keras.Input((2,)),
        keras.layers.Dense(1, use_bias=False, kernel_initializer="ones",
                           activity_regularizer=keras.regularizers.L1(0.5))])
    model.compile(loss="mse")
    model(np.array([[1., 2.]], "float32"))
    (loss,) = model.losses
    value = _internals.aggregate_additional_loss(model, loss)
    # L1(0.5) of the activation 3, averaged over the batch of 1.
    np.testing.assert_allclose(ops.convert_to_numpy(value), 1.5, rtol=1e-6)


def test_loss_scaling_for_distribution_is_identity_on_one_replica():
    x = ops.convert_to_tensor(np.float32(3.0))
    np.testing.assert_allclose(
        ops.convert_to_numpy(_internals.scale_loss_for_distribution(x)), 3.0)
    np.testing.assert_allclose(
        ops.convert_to_numpy(_internals.unscale_loss_for_distribution(x)),
        3.0)


def test_input_structure_of_functional_and_sequential_models():
    a, b = keras.Input((2,), name="a"), keras.Input((3,), name="b")
    model = keras.Model({"a": a, "b": b},
                        keras.layers.Concatenate()([a, b]))
    struct = _internals.input_structure(model)
    assert sorted(struct) == ["a", "b"] and struct["a"].name == "a"
    sequential = keras.Sequential([keras.Input((2,), name="x"),
                                   keras.layers.Dense(1)])
    assert _internals.input_structure(sequential).name == "x"


def test_compiled_metrics_container_name_and_order():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model.compile(loss="mse", metrics=["mae"], weighted_metrics=["mse"])
    model.evaluate(np.zeros((4, 2), "float32"), np.zeros((4, 3), "float32"),
                   verbose=0)
    containers = [m for m in model.metrics
                  if m.name == _internals.COMPILE_METRICS_NAME]
    assert len(containers) == 1
    assert _internals.compiled_metric_names(containers[0]) == ["mae", "mse"]


if BACKEND == "jax":
    def test_layout_map_of_model_parallel():
        import jax  # pylint: disable=import-outside-toplevel
        mesh = keras.distribution.DeviceMesh(
            (1,), ["model"], devices=jax.devices()[:1])
        layout_map = keras.distribution.LayoutMap(mesh)
        layout_map["dense.*kernel"] = (None, "model")
        distribution = keras.distribution.ModelParallel(
            layout_map=layout_map)
        assert _internals.layout_map(distribution) is layout_map

    def test_jax_backends_started():
        import jax  # pylint: disable=import-outside-toplevel
        jax.numpy.ones(1).block_until_ready()
        assert _internals.jax_backends_started()

if BACKEND == "tensorflow":
    def test_tf_in_xla_context():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        seen = {}

        def probe(jit):
            def fn(x):
                seen[jit] = _internals.tf_in_xla_context()
                return x
            return tf.function(fn, jit_compile=jit)

        probe(True)(tf.ones(1))
        probe(False)(tf.ones(1))
        assert seen == {True: True, False: False}
        assert not _internals.tf_in_xla_context()  # Eager.


def test_every_private_access_lives_in_internals():
    # The rest of the library reaches no private framework API.
    import pathlib  # pylint: disable=import-outside-toplevel
    import re  # pylint: disable=import-outside-toplevel
    root = pathlib.Path(_internals.__file__).parent
    pattern = re.compile(
        r"keras\.src|tensorflow\.python|jax\._src|_inputs_struct|"
        r"\._flatten_layers|_aggregate_additional_loss|\._layout_map|"
        r"\"compile_metrics\"")
    offenders = []
    for path in root.rglob("*.py"):
        if path.name.endswith("_test.py") or path.name == "_internals.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(root)}:{number}: {line}")
    assert not offenders, "\n".join(offenders)


def test_oldest_supported_keras_is_declared():
    # pyproject's lower bound is the version scripts/test.sh also tests.
    import pathlib  # pylint: disable=import-outside-toplevel
    import re  # pylint: disable=import-outside-toplevel
    root = pathlib.Path(_internals.__file__).parent.parent
    pyproject = (root / "pyproject.toml").read_text()
    script = (root / "scripts" / "test.sh").read_text()
    bounds = set(re.findall(r"keras>=([0-9.]+)", pyproject))
    assert len(bounds) == 1, bounds
    (oldest,) = bounds
    assert f"OLDEST_KERAS={oldest}" in script
