#!/usr/bin/env bash
# Set up and run the whole test suite (every tier whose parts exist on this machine).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m unit`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-mxnet.sh
echo "[test] lint: ruff"; .venv/bin/ruff check raykube jobs tests
exec .venv/bin/python -m pytest "$@"
