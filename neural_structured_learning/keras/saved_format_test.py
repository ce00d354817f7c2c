"""`.keras` files saved before the pipeline redesign still load.

`testdata/*_c9e1b77.keras` were saved (TensorFlow backend) by the library at
commit c9e1b77, before the wrappers shared `RegularizedModel`: each wrapper,
compiled with Adam and trained one step. They must load on every backend,
give the same base-model predictions, keep their configs and metric names,
and train on.
"""

import os
import warnings

import keras
import numpy as np
import pytest

import neural_structured_learning as nsl
from neural_structured_learning._testing import assert_allclose

_DATA = os.path.join(os.path.dirname(__file__), "testdata")
_CASES = {
    "adversarial": (nsl.keras.AdversarialRegularization,
                    "scaled_adversarial_loss"),
    "vat": (nsl.keras.VirtualAdversarialRegularization, "scaled_entropy"),
    "graph": (nsl.keras.GraphRegularization, "scaled_graph_loss"),
}


@pytest.mark.parametrize("name", sorted(_CASES))
def test_old_files_load(name):
    cls, metric = _CASES[name]
    x = np.load(os.path.join(_DATA, "inputs.npy"))
    expected = np.load(os.path.join(_DATA, f"{name}_c9e1b77_predictions.npy"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # No skipped variables.
        model = keras.saving.load_model(
            os.path.join(_DATA, f"{name}_c9e1b77.keras"))
    assert type(model) is cls
    assert_allclose(model.base_model.predict(x, verbose=0), expected,
                    rtol=1e-5, atol=1e-6)
    y = np.array([0, 1, 2, 1, 0, 2, 1, 0], "int32")
    if name == "graph":
        assert model.embedding_layer == "embedding"
        data = ({"feature": x, "NL_nbr_0_feature": x[::-1].copy(),
                 "NL_nbr_0_weight": np.ones((8, 1), "float32")}, y)
    else:
        data = ({"feature": x, "label": y}, None)
    history = model.fit(*data, batch_size=8, epochs=1, verbose=0)
    assert metric in history.history
    assert np.isfinite(history.history["loss"][0])
