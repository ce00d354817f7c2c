#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU and PyTorch and JAX (CUDA
# builds) but no network: the library's tests on the GPU for the PyTorch and
# JAX backends, the tutorial's softmax model (its adversarial term must not be
# `multiplier * clean loss`), and the adversarial / VAT step cost on the GPU.
#
#   bash scripts/gpu_check.sh [OUTPUT_DIR]
#
# Keras and the wheels it needs beside those frameworks come from `.whl/`,
# downloaded where pip works (for the GPU machine's Python 3.12):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_28_x86_64 -d .whl keras==3.15.1 namex optree attrs
# TF32 is switched off
# (NVIDIA_TF32_OVERRIDE=0) so the tests' float32 tolerances hold; the step
# timings below are taken with TF32 on, as users run.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$out"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi -L
python3 -c "import torch, jax; print('torch', torch.__version__, torch.cuda.is_available(), '| jax', jax.__version__, jax.devices())"

tests=(neural_structured_learning/keras neural_structured_learning/lib
       neural_structured_learning/evaluation
       neural_structured_learning/_internals_test.py)
for backend in torch jax; do
    echo "=== tests on the GPU, KERAS_BACKEND=$backend"
    NVIDIA_TF32_OVERRIDE=0 KERAS_BACKEND=$backend timeout "${TEST_TIMEOUT:-170}" \
        python3 -m pytest -q -p no:cacheprovider -n "${WORKERS:-12}" "${tests[@]}" \
        2>&1 | tee "$out/tests_$backend.log" | tail -25
done

cat > /tmp/tutorial_check.py <<'EOF'
import keras, numpy as np
import neural_structured_learning as nsl
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.uniform(size=(256, 28, 28)).astype("float32")
y = rng.integers(0, 10, size=256)
model = keras.Sequential([keras.Input((28, 28), name="feature"), keras.layers.Flatten(),
                          keras.layers.Dense(128, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
cfg = nsl.configs.make_adv_reg_config(multiplier=0.2, adv_step_size=0.05)
adv = nsl.keras.AdversarialRegularization(model, adv_config=cfg)
adv.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
h = adv.fit({"feature": x, "label": y}, batch_size=32, epochs=2, verbose=0).history
w = model.trainable_weights[0].value
print("device:", getattr(w, "device", None) or getattr(w, "devices", lambda: None)())
for e in range(2):
    clean = h["sparse_categorical_crossentropy"][e]
    term = h["scaled_adversarial_loss"][e]
    print(keras.backend.backend(), e, f"term={term:.5f} 0.2*clean={0.2 * clean:.5f} "
          f"ratio={term / (0.2 * clean):.4f}")
EOF
for backend in torch jax; do
    echo "=== tutorial softmax check, KERAS_BACKEND=$backend"
    KERAS_BACKEND=$backend timeout 60 python3 /tmp/tutorial_check.py 2>&1 \
        | grep -v Warning | tee "$out/tutorial_$backend.log"
done

echo "=== step cost on the GPU (TF32 as default)"
timeout "${BENCH_TIMEOUT:-150}" python3 benchmarks/adversarial_step_benchmark.py \
    --backends jax torch --variants base fgsm vat --steps 50 --epochs 2 \
    --rounds 2 --json "$out/step_gpu.json" 2>&1 | tee "$out/step_gpu.log" | tail -15
