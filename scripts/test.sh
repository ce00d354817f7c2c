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
# pytest runs two workers (-n 2, sized for 2 cores): with one OpenMP thread
# per core each, PyTorch's workers spin against each other (PyTorch library
# tests: 86 s -> 51 s with one thread each; nsl.evaluation's alone 62 s ->
# 13 s). TensorFlow and JAX size their own thread pools (no change).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# JAX compiles every operation once per input shape in each process; a
# compilation cache shared by this run's processes (pytest workers, the
# tests' subprocesses) saves that work (JAX library tests: 195 s -> 173 s).
# Fresh for each run and removed at exit: nothing carries over between runs.
JAX_CACHE_DIR=$(mktemp -d -t nsl_jax_cache.XXXXXX)
source scripts/background_jobs.sh
trap 'rm -rf "$JAX_CACHE_DIR"; stop_background_jobs' EXIT
export JAX_COMPILATION_CACHE_DIR="$JAX_CACHE_DIR"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
export JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=-1
PYTEST=(.venv/bin/python -m pytest -q -rs -p no:cacheprovider)
# Docstring examples run as doctests: --doctest-modules imports every module
# (conftest.py skips the other backends' lib/_gradients_<backend>.py and the
# tests/*_worker.py scripts, and gives the examples np, keras and nsl).
DOCTEST=(--doctest-modules)

echo "=== framework-free: configs, datasets and tools"
"${PYTEST[@]}" "${DOCTEST[@]}" neural_structured_learning/configs \
    neural_structured_learning/datasets neural_structured_learning/tools
for backend in tensorflow jax torch; do
    echo "=== KERAS_BACKEND=$backend"
    KERAS_BACKEND=$backend "${PYTEST[@]}" "${DOCTEST[@]}" -n 2 \
        neural_structured_learning \
        --ignore=neural_structured_learning/configs \
        --ignore=neural_structured_learning/datasets \
        --ignore=neural_structured_learning/tools
done
# The oldest Keras that pyproject.toml accepts: the private-API pins
# (_internals_test.py) and the core wrapper tests, per backend. Keras is pure
# Python, so it is installed beside .venv (--target), not as a second venv.
OLDEST_KERAS=3.14.0
echo "=== oldest supported Keras ($OLDEST_KERAS)"
if [ ! -f .venv-keras-oldest/keras/__init__.py ] || ! grep -q "$OLDEST_KERAS" \
        .venv-keras-oldest/keras/src/version.py 2>/dev/null; then
    rm -rf .venv-keras-oldest
    .venv/bin/pip install -q --disable-pip-version-check --no-deps \
        --target .venv-keras-oldest "keras==$OLDEST_KERAS"
fi
for backend in tensorflow jax torch; do
    PYTHONPATH=.venv-keras-oldest KERAS_BACKEND=$backend "${PYTEST[@]}" -n 2 \
        neural_structured_learning/_internals_test.py \
        neural_structured_learning/lib/gradients_test.py \
        neural_structured_learning/keras/_wrapper_test.py \
        neural_structured_learning/keras/regularized_model_test.py
    # (Not adversarial_regularization_test.py, for time: _wrapper_test.py
    # runs the adversarial wrapper's hooks too.)
    # (Not saved_format_test.py: its files were written by Keras 3.15,
    # whose configs Keras 3.14 cannot read, e.g. GlorotUniform's new
    # `input_axes`.)
done
# The Beam pipelines' tests run beside the agreement tests below, in
# .venv-beam (see setup.sh), where apache_beam is installed (in .venv above
# they skip, naming the missing package). They keep one core busy for about
# 30 s; the agreement tests leave one mostly idle (their workers wait on
# subprocesses), so CI takes about 30 s less.
if [ -x .venv-beam/bin/python ]; then
    start_background_job .venv-beam/bin/python -m pytest -q -rs \
        -p no:cacheprovider --doctest-modules neural_structured_learning/tools/beam
fi
echo "=== cross-backend and NSL 1.4 agreement"
# --dist loadscope: a module's tests run in one worker, so module fixtures
# (cross_backend_test.py's three backend runs) are computed once.
"${PYTEST[@]}" -n 2 --dist loadscope tests --ignore=tests/docs_test.py
if [ -x .venv-beam/bin/python ]; then
    echo "=== framework-free: Apache Beam pipelines (.venv-beam, run beside the above)"
    wait_background_jobs
fi
# Every code block of README.md and docs/*.md, page by page (default backend).
echo "=== docs: README.md and docs/*.md run as written"
"${PYTEST[@]}" -n 2 tests/docs_test.py
