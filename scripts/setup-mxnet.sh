#!/usr/bin/env bash
# Create (or update) .venv-mxnet: the separate environment MXNet workers run in.
# MXNet 1.9.1, the last release of the retired Apache MXNet, needs numpy < 2, so it cannot share
# .venv (Ray's data stack and TensorFlow need numpy >= 2). Ray runs MXNet workers with this
# interpreter (RAYKUBE_MXNET_PYTHON); its Ray and Python versions match .venv's.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv-mxnet/bin/python ]; then
  echo "[setup-mxnet] creating .venv-mxnet with $($PYTHON --version)"
  "$PYTHON" -m venv .venv-mxnet
  .venv-mxnet/bin/pip install -q --upgrade pip
fi
echo "[setup-mxnet] installing mxnet 1.9.1 with numpy 1.26 and ray 2.60.0"
.venv-mxnet/bin/pip install -q -r requirements-mxnet.txt
.venv-mxnet/bin/pip install -q --no-deps -e .
echo "[setup-mxnet] done: RAYKUBE_MXNET_PYTHON=$PWD/.venv-mxnet/bin/python"
