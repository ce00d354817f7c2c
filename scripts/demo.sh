#!/usr/bin/env bash
# Sets everything up, then runs the main demo: adversarial regularization of a
# CNN, base vs regularized, evaluated clean and under FGSM; writes a PNG.
# Offline it uses scikit-learn's bundled 8x8 digits; with NSL_DATA_DIR (or
# --data_dir) holding mnist/mnist.npz it uses MNIST. Extra arguments go to
# examples/adversarial_mnist.py (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
NSL14=0 bash scripts/setup.sh
exec .venv/bin/python examples/adversarial_mnist.py "$@"
