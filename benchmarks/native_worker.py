"""One worker of a *native* run: the framework's own launcher starts N of these.

    python -m torch.distributed.run --standalone --nproc_per_node 2 benchmarks/native_worker.py \
        torch --batch 64 --steps 60 --warmup 10 --out timing.json

torch: torchrun's environment (RANK, WORLD_SIZE, MASTER_*) and a gloo process group;
tensorflow: TF_CONFIG and MultiWorkerMirroredStrategy; mxnet: DMLC_* and a dist_sync kvstore
(scheduler and server started by the launcher). Rank 0 writes the timing as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import apply_single_thread_env, mxnet_steps, tensorflow_steps, torch_steps  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("framework", choices=["torch", "tensorflow", "mxnet"])
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    apply_single_thread_env()
    if args.framework == "torch":
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        if world > 1:
            import torch.distributed as dist

            dist.init_process_group("gloo")
        result = torch_steps(rank, world, args.batch, args.steps, args.warmup)
    elif args.framework == "tensorflow":
        config = json.loads(os.environ.get("TF_CONFIG", "{}"))
        world = len(config.get("cluster", {}).get("worker", [])) or 1
        rank = int(config.get("task", {}).get("index", 0))
        import tensorflow as tf

        strategy = (tf.distribute.MultiWorkerMirroredStrategy() if world > 1
                    else tf.distribute.get_strategy())
        result = tensorflow_steps(strategy, rank, world, args.batch, args.steps, args.warmup)
    else:
        world = int(os.environ.get("DMLC_NUM_WORKER", 1))
        kvstore = None
        if world > 1:
            from raykube.frameworks.mxnet import patch_numpy

            patch_numpy()
            import mxnet as mx

            kvstore = mx.kv.create("dist_sync")
        rank = kvstore.rank if kvstore is not None else 0
        result = mxnet_steps(kvstore, rank, world, args.batch, args.steps, args.warmup)
    if rank == 0:
        Path(args.out).write_text(json.dumps(result))
    if args.framework == "mxnet" and world > 1:
        # ps-lite's exit barrier can hang once every step is done (seen here); skip it.
        os._exit(0)


if __name__ == "__main__":
    main()
