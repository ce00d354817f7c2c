#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite: framework-free tests
# once, the library's tests once per Keras backend (TensorFlow, JAX, PyTorch),
# then the cross-backend and NSL 1.4 agreement tests.
# Data-dependent tests read NSL_DATA_DIR (e.g. NSL_DATA_DIR=../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -x .venv-nsl14/bin/python ]; then
    export NSL14_PYTHON="$PWD/.venv-nsl14/bin/python"
fi
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
PYTEST=(.venv/bin/python -m pytest -q -rs -p no:cacheprovider)

echo "=== framework-free: configs and tools"
"${PYTEST[@]}" neural_structured_learning/configs neural_structured_learning/tools
for backend in tensorflow jax torch; do
    echo "=== KERAS_BACKEND=$backend"
    KERAS_BACKEND=$backend "${PYTEST[@]}" -n 2 neural_structured_learning \
        --ignore=neural_structured_learning/configs \
        --ignore=neural_structured_learning/tools
done
echo "=== cross-backend and NSL 1.4 agreement"
"${PYTEST[@]}" tests
