"""Run the benchmarks and write results.json, results.md and PNG plots.

    python -m benchmarks --quick --out bench-results/quick    # CI: the harness works (~3 min)
    python -m benchmarks --full --out bench-results/full      # the numbers (~30 min on 2 CPUs)

Starts its own local cluster (a head without CPUs and two 1-CPU workers), measures training
(raykube and native launchers), serving (raykube service and plain uvicorn), serving through
faults and changes under load (benchmarks/faults.py), cluster
operations, and Ray Data (batch inference, streamed training; benchmarks/data.py), each a median of repeated runs, and prints the Markdown table. Every claim is a
ratio of two figures measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
import tempfile
import time
from pathlib import Path

from benchmarks import machine, report
from benchmarks.cluster_ops import bench_lifecycle, fixed_spec, job_seconds
from benchmarks.faults import bench_faults
from benchmarks.serving import bench_serving, summarise_serving
from benchmarks.training import bench_training, summarise_training
from benchmarks.workloads import apply_single_thread_env

SECTIONS = ("training", "serving", "faults", "cluster_ops", "data", "kubernetes")
"""What --only picks from; quick runs leave kubernetes out unless it is named (it needs root
and ../shared/k8s)."""


def main() -> int:
    parser = argparse.ArgumentParser(description="raykube benchmarks")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true", help="small: checks the harness")
    mode.add_argument("--full", action="store_true", help="the numbers")
    parser.add_argument("--out", default="bench-results", help="results folder")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these")
    parser.add_argument("--repeats", type=int, default=None, help="runs per figure")
    args = parser.parse_args()
    quick = bool(args.quick)
    repeats = args.repeats or (1 if quick else 3)
    sections = args.only or [s for s in SECTIONS if s != "kubernetes" or not quick]
    started = time.monotonic()
    progress = report.progress_printer()

    # One compute thread per worker under every launcher; the cluster's processes inherit it.
    apply_single_thread_env()
    results: dict[str, object] = {"mode": "quick" if quick else "full", "repeats": repeats,
                                  "machine": machine.describe()}
    if set(sections) - {"kubernetes", "data"}:
        _bench_local(sections, results, quick=quick, repeats=repeats, progress=progress)
    if "data" in sections:  # a cluster of its own shape, after the others are down
        from benchmarks.data import bench_data

        results["data"] = bench_data(quick=quick, repeats=repeats, progress=progress)
    if "kubernetes" in sections:  # after the local clusters are down: a quiet machine
        from benchmarks.kubernetes import bench_kubernetes, unavailable

        reason = unavailable()
        results["kubernetes"] = {"skipped": reason} if reason else bench_kubernetes(
            repeats=repeats, quick=quick, progress=progress)
    results["seconds"] = round(time.monotonic() - started, 1)
    print(report.write(results, Path(args.out)))
    return 0


def _bench_local(sections: list[str], results: dict[str, object], *, quick: bool,
                 repeats: int, progress: Callable[[str], None]) -> None:
    """Training, serving and cluster operations on the local backend."""
    import ray

    import raykube

    progress("starting the benchmark cluster")
    cluster = raykube.up(fixed_spec("rk-bench"), timeout=180)
    try:
        if "training" in sections:
            storage = tempfile.mkdtemp(prefix="rk-bench-storage-")
            rows = bench_training(cluster, storage, quick=quick, repeats=repeats,
                                  progress=progress)
            results["training"] = rows
            results["training_summary"] = summarise_training(rows)
        if "serving" in sections:
            rows = bench_serving(cluster, quick=quick, progress=progress)
            results["serving"] = rows
            results["serving_summary"] = summarise_serving(rows)
        if "faults" in sections:
            results["faults"] = bench_faults(cluster, quick=quick, progress=progress)
        if "cluster_ops" in sections:
            progress("cluster ops: job submission latency")
            jobs = job_seconds(cluster, 2 if quick else 5)
            jobs["submit_ratio"] = jobs["raykube_submit_to_done_s"] / jobs["ray_sdk_submit_to_done_s"]
            results["cluster_ops"] = jobs
    finally:
        ray.shutdown()
        cluster.down()
    if "cluster_ops" in sections and not quick:  # on a quiet machine: no other cluster up
        lifecycle = bench_lifecycle(repeats=repeats, progress=progress)
        results["cluster_ops"] = {**results["cluster_ops"], **lifecycle}  # type: ignore[dict-item]


if __name__ == "__main__":
    sys.exit(main())
