"""The GPU check, run on a machine with a real NVIDIA GPU (the `device` tool's machine).

    python scripts/gpu_check.py --out results/

Starts a one-node Ray cluster owning the machine's GPUs and trains jobs/train_torch.py's loop
through raykube.train with gpus_per_worker=1: the workers must compute on CUDA (NCCL backend,
model and data on the GPU), reach the accuracy bar, save a checkpoint a CPU-only server can
load, and the GPU run is timed against the same run on CPU workers in the same session.
Writes gpu_check.json. Exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "jobs"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-check")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--allow-cpu", action="store_true", help="dry run on a machine without")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import ray
    import torch

    import raykube
    from train_torch import train_loop

    gpus = torch.cuda.device_count()
    report: dict[str, object] = {
        "python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
        "cuda_available": torch.cuda.is_available(), "gpus": gpus,
        "gpu_name": torch.cuda.get_device_name(0) if gpus else None,
        "cpus": os.cpu_count(),
    }
    if not gpus and not args.allow_cpu:
        print(json.dumps(report))
        print("no CUDA GPU here", file=sys.stderr)
        return 1
    # The jobs folder is this driver's working_dir: the batch actors import the predictor.
    ray.init(num_cpus=min(8, os.cpu_count() or 2), num_gpus=max(gpus, 1),
             include_dashboard=False, runtime_env={"working_dir": str(ROOT / "jobs")})
    # This one-node Ray is the cluster every raykube call below means (as inside a Ray job).
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    runs = {}
    for label, gpu in (("gpu", 1), ("cpu", 0)):
        started = time.monotonic()
        result = raykube.train(
            train_loop, framework="torch", num_workers=1, gpus_per_worker=gpu,
            storage_path=str(out.resolve() / "storage"), name=f"gpu-check-{label}",
            config={"lr": 0.01, "batch_size": 32, "epochs": args.epochs},
        )
        summary = result.return_value
        runs[label] = {
            "seconds": round(time.monotonic() - started, 2),
            "test_accuracy": summary["test_accuracy"],
            "devices": summary["devices"],
            "checkpoint": result.checkpoint,
        }
        print(label, json.dumps(runs[label]), flush=True)
    report["runs"] = runs
    report["gpu_vs_cpu_time_ratio"] = round(runs["gpu"]["seconds"] / runs["cpu"]["seconds"], 3)

    # The GPU run's checkpoint must load on a machine without a GPU (a CPU-only server).
    from raykube.worker import load_state

    state = load_state(str(runs["gpu"]["checkpoint"]))
    report["checkpoint_tensors_on_cpu"] = all(
        t.device.type == "cpu" for t in state["model"].values())
    data = data_check(out, gpus_per_worker=1 if gpus else 0)
    report["data"] = data
    checks = {
        "streamed gpu training accuracy >= 0.9": data["streamed_test_accuracy"] >= 0.9,
        "gpu batch pool predicted every row": data["gpu_rows_out"] == data["rows"],
        "gpu workers computed on CUDA": all(d.startswith("cuda") for d in runs["gpu"]["devices"])
        or args.allow_cpu,
        "cpu workers computed on the CPU": runs["cpu"]["devices"] == ["cpu"],
        "gpu accuracy >= 0.9": runs["gpu"]["test_accuracy"] >= 0.9,
        "checkpoint loads without a GPU": report["checkpoint_tensors_on_cpu"],
    }
    report["checks"] = checks
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, default=str))
    ray.shutdown()
    return 0 if all(checks.values()) else 1


def data_check(out: Path, gpus_per_worker: float) -> dict[str, object]:
    """The Ray Data variant: streamed training on the GPU, then batch inference over the same
    files with a GPU actor pool and with a CPU one, in the same session (rows/s and ratio)."""
    import digits_at_scale
    import raykube
    from digits_data import write_digits_parquet

    rows = 400_000
    paths = write_digits_parquet(out / "digits", rows, rows)
    trained = digits_at_scale.train_streamed(
        None, paths, storage=str(out.resolve() / "storage"), name="gpu-check-streamed",
        workers=1, gpus_per_worker=gpus_per_worker)
    figures: dict[str, object] = {"rows": rows,
                                  "streamed_test_accuracy": trained.metrics["test_accuracy"],
                                  "streamed_rows_per_s": trained.metrics["rows_per_s"]}
    for label, resources in (("gpu", {"cpus": 1, "gpus": gpus_per_worker}), ("cpu", {"cpus": 1})):
        spec = digits_at_scale.batch_spec(str(trained.checkpoint), paths["test"],
                                          str(out / f"predictions-{label}"),
                                          resources=resources, workingDir=None,
                                          actorPool={"minSize": 1, "maxSize": 1})
        written = raykube.batch_predict(spec)
        figures[f"{label}_rows_out"] = written.rows_out
        figures[f"{label}_batch_rows_per_s"] = round(written.rows_per_s, 1)
    figures["gpu_over_cpu_batch"] = round(
        float(figures["gpu_batch_rows_per_s"]) / float(figures["cpu_batch_rows_per_s"]), 3)
    print("data", json.dumps(figures), flush=True)
    return figures


if __name__ == "__main__":
    sys.exit(main())
