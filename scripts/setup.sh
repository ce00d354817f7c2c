#!/usr/bin/env bash
# Creates .venv with the package, the three Keras backends (CPU builds) and the
# test/example dependencies. Idempotent. Also builds .venv-nsl14 (NSL 1.4 on
# TensorFlow 2.15.1, the baseline for agreement tests and benchmarks) unless
# NSL14=0; that needs Python 3.10 or 3.11.
#
# .venv-beam and .venv-nsl14 install beside .venv, not after it: pip keeps
# about one core busy, and from scratch on the 2-core machine the three took
# 97 s one after another, 78 s side by side. Each side environment's output
# is shown when it is done. Editable installs of this package write its
# .egg-info into the source tree, so those two take turns (flock on a lock
# file under .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/background_jobs.sh
trap stop_background_jobs EXIT  # If .venv's install fails, no pip is left.
PYTHON=${PYTHON:-python3}
PIP_FLAGS=(-q --disable-pip-version-check)

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
EDITABLE_LOCK=.venv/.editable-install.lock

# Apache Beam (nsl.tools.beam) gets its own environment, .venv-beam: apache-beam
# 2.77 needs protobuf < 7, pyarrow < 26 and pillow < 13, older than .venv's.
# BEAM=0 skips it (the Beam tests then skip, naming apache_beam).
setup_beam() {
    if [ ! -x .venv-beam/bin/python ]; then
        "$PYTHON" -m venv .venv-beam
    fi
    flock "$EDITABLE_LOCK" .venv-beam/bin/pip install "${PIP_FLAGS[@]}" \
        -e ".[beam]" "pytest>=8" "psutil>=5" \
        || echo "WARNING: could not install Apache Beam; its tests will be skipped"
}

setup_nsl14() {
    if "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 10), (3, 11)))'; then
        "$PYTHON" -m venv .venv-nsl14
        .venv-nsl14/bin/pip install "${PIP_FLAGS[@]}" \
            "tensorflow-cpu==2.15.1" "neural-structured-learning==1.4.0" \
            || { echo "WARNING: could not install NSL 1.4; its comparisons will be skipped"; rm -rf .venv-nsl14; }
    else
        echo "WARNING: NSL 1.4 needs Python 3.10 or 3.11; its comparisons will be skipped"
    fi
}

if [ "${BEAM:-1}" = "1" ]; then
    start_background_job setup_beam
fi
if [ "${NSL14:-1}" = "1" ] && [ ! -x .venv-nsl14/bin/python ]; then
    start_background_job setup_nsl14
fi

# torch 2.13.0 first: its CPU wheel; an unpinned torch would pull CUDA builds.
.venv/bin/pip install "${PIP_FLAGS[@]}" "torch==2.13.0"
flock "$EDITABLE_LOCK" .venv/bin/pip install "${PIP_FLAGS[@]}" \
    -e ".[tensorflow-cpu,jax,torch,tools,dev]"
# torchattacks: the reference implementation our APGD/Square attacks are
# checked against (tests/autoattack_torchattacks_test.py). --no-deps: its
# torchvision requirement would pull a CUDA torch; it imports without it.
.venv/bin/pip install "${PIP_FLAGS[@]}" --no-deps "torchattacks==3.5.1"

wait_background_jobs
