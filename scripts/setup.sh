#!/usr/bin/env bash
# Create (or update) the project's Python environment in .venv: raykube with its pinned Ray,
# PyTorch (CPU wheel), TensorFlow, the example data and the test tools, at the versions
# constraints.txt pins. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
echo "[setup] installing raykube and its pinned dependencies into .venv"
.venv/bin/pip install -q -c constraints.txt -e '.[torch,tensorflow,examples,notebook,test]'
echo "[setup] done: $(.venv/bin/python -c 'import ray, torch; print("ray", ray.__version__, "torch", torch.__version__)')"
