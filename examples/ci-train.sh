#!/usr/bin/env bash
# A CI step that trains on a fresh raykube cluster with Ray's own CLI, and fails the pipeline
# when the training job fails. Run from the repository root after `bash scripts/setup.sh`.
#
#   bash examples/ci-train.sh [SPEC]
set -euo pipefail
spec=${1:-clusters/local.yaml}
name=$(raykube spec "$spec" >/dev/null && python -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['name'])" "$spec")
raykube up "$spec"
trap 'raykube down "$name"' EXIT
eval "$(raykube env "$name")"          # RAY_API_SERVER_ADDRESS and the token settings
# Ray's own CLI, exactly as in Ray's docs: it exits non-zero when the job fails.
ray job submit --working-dir jobs -- python train_torch.py --epochs 5
