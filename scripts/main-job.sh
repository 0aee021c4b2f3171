#!/usr/bin/env bash
# The main job on the embedded local cluster: set up, start clusters/local.yaml, train a digit
# classifier with PyTorch DDP on 2 workers, print the result as JSON, and stop the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
raykube up clusters/local.yaml
trap 'raykube down local' EXIT
python jobs/train_torch.py --cluster local --workers 2
