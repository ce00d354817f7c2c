"""The MNIST-100 example's BatchNormalization recalibration (issue 13).

`recalibrate_batchnorm` replaces training's moving averages by each
layer's exact input statistics on the given images, layer by layer; after
it, every BatchNormalization's inference-mode output on those images has
mean `beta` and variance `gamma**2 * var / (var + epsilon)` per feature.
"""

import importlib.util
import pathlib

import keras
import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent


def _example():
    spec = importlib.util.spec_from_file_location(
        "vat_mnist100", REPO / "examples" / "vat_mnist100.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recalibrated_statistics_standardise_every_layer():
    example = _example()
    keras.utils.set_random_seed(0)
    model = example.build_mlp(units=(32, 16, 8))
    x = np.random.default_rng(0).uniform(size=(1000, 784)).astype("float32")
    norms = [layer for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 3
    # Fresh moving statistics (0 and 1) are far from the inputs' own.
    example.recalibrate_batchnorm(model, x, batch_size=300)  # uneven batches
    h = keras.ops.convert_to_tensor(x)
    for layer in model.layers:
        before = keras.ops.convert_to_numpy(h).astype("float64")
        h = layer(h, training=False)
        if isinstance(layer, keras.layers.BatchNormalization):
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(layer.moving_mean),
                before.mean(0), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(layer.moving_variance),
                before.var(0), rtol=1e-3, atol=1e-6)
            out = keras.ops.convert_to_numpy(h).astype("float64")
            var = before.var(0)
            np.testing.assert_allclose(out.mean(0), 0, atol=1e-4)
            np.testing.assert_allclose(out.var(0), var / (var + layer.epsilon),
                                       rtol=1e-3)
