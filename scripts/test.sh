#!/usr/bin/env bash
# Set up and run the whole test suite (every tier whose parts exist on this machine).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m unit`.
# With none, two pytest runs: every tier but k8s_e2e, then k8s_e2e alone, so the end-to-end
# KubeRay clusters do not share the 2 cores with the local session cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-mxnet.sh
echo "[test] lint: ruff"; .venv/bin/ruff check raykube jobs tests benchmarks
echo "[test] layers: import-linter"; .venv/bin/lint-imports --no-cache
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
failed=0
.venv/bin/python -m pytest -m "not k8s_e2e" --durations=15 || failed=$?
.venv/bin/python -m pytest -m k8s_e2e --durations=15 || failed=$?
exit "$failed"
