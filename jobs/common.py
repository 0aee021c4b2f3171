"""What the example jobs share: their command line, their end-of-run check, their summary."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import raykube
from raykube import worker

from digits import fingerprint

ACCURACY_BAR = 0.90
"""The held-out accuracy every example must reach with 2 workers."""


def parse_args(description: str, epochs: int) -> argparse.Namespace:
    """The options every example job takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--cluster", default=None,
        help="cluster name or host:port; default: the cluster of the Ray job this runs in",
    )
    parser.add_argument("--workers", type=int, default=2, help="training workers (default 2)")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"epochs (default {epochs})")
    parser.add_argument("--gpus", type=float, default=0, help="GPUs per worker (default 0)")
    parser.add_argument("--storage", default=None, help="checkpoint folder (default: spec's)")
    parser.add_argument("--name", default=None, help="run name: the same name resumes a run")
    parser.add_argument("--max-failures", type=int, default=0,
                        help="restarts from the latest checkpoint after a worker dies (default 0)")
    parser.add_argument("--epoch-delay", type=float, default=0.0,
                        help="seconds to pause after each epoch (PyTorch example), to interrupt a run on purpose")
    return parser.parse_args()


def final_summary(weights: list[Any], accuracy: float, started_at_epoch: int) -> dict[str, Any]:
    """Run on every worker at the end: gather each replica's parameter fingerprint and node,
    so the driver can check that the replicas are identical and where they ran."""
    replicas = worker.gather({"fingerprint": fingerprint(weights), "node": worker.node_id(),
                              "device": _device_name()}, "final")
    return {
        "test_accuracy": float(accuracy),
        "fingerprints": [r["fingerprint"] for r in replicas],
        "nodes": [r["node"] for r in replicas],
        "devices": [r["device"] for r in replicas],
        "started_at_epoch": started_at_epoch,
        "world_size": worker.context().world_size,
    }


def _device_name() -> str:
    """Where this worker computed: 'cuda:0 (NVIDIA H200)' on a real GPU, else 'cpu'."""
    try:
        import torch
    except ImportError:
        return "cpu"
    if not worker.has_gpu():
        return "cpu"
    index = torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def run_example(framework: str, loop: Callable[[dict[str, Any]], Any], description: str,
                config: dict[str, Any], epochs: int = 15) -> None:
    """Train ``loop`` as the command line asks, print a JSON summary, exit 1 below the bar."""
    args = parse_args(description, epochs)
    started = time.monotonic()
    result = raykube.train(
        loop, framework=framework, cluster=args.cluster, num_workers=args.workers,
        gpus_per_worker=args.gpus, storage_path=args.storage, name=args.name,
        config={**config, "epochs": args.epochs, "epoch_delay_s": args.epoch_delay},
        max_failures=args.max_failures,
    )
    summary = {
        "framework": framework,
        "workers": args.workers,
        "test_accuracy": result.return_value["test_accuracy"],
        "replicas_identical": len(set(result.return_value["fingerprints"])) == 1,
        "epochs": result.metrics.get("epoch", -1) + 1,
        "checkpoint": result.checkpoint,
        "started_at_epoch": result.return_value["started_at_epoch"],
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary, sort_keys=True))
    if summary["test_accuracy"] < ACCURACY_BAR:
        print(f"test accuracy {summary['test_accuracy']:.3f} is below {ACCURACY_BAR}",
              file=sys.stderr)
        sys.exit(1)
