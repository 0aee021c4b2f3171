"""Training scaling efficiency and raykube's overhead against native launchers, same session.

For each framework and launcher (raykube on the benchmark cluster; torchrun, TF_CONFIG processes
or a ps-lite launch natively) three configurations run, each ``repeats`` times:

- 1 worker, batch B (the baseline of both scalings);
- 2 workers, batch B each (weak scaling: the work grows with the workers);
- 2 workers, batch B/2 each (strong scaling: the same global batch split).

Efficiency(2) = throughput(2) / (2 x throughput(1)) within one launcher; overhead = raykube /
native steady-state throughput at the same configuration. Start-up (call -> first step) is
reported apart.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.machine import free_port
from benchmarks.workloads import (
    mxnet_steps,
    single_thread_env,
    tensorflow_steps,
    torch_steps,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MXNET_PYTHON = ROOT / ".venv-mxnet" / "bin" / "python"


@dataclass(frozen=True)
class RunConfig:
    """One timed configuration."""

    framework: str
    workers: int
    batch: int  # per worker
    scaling: str  # "baseline", "weak" or "strong"
    steps: int
    warmup: int


def raykube_loop(config: dict[str, Any]) -> dict[str, Any]:
    """The per-worker loop raykube runs: the shared workload, under raykube's worker API."""
    from raykube import worker

    ctx = worker.context()
    args = (ctx.rank, ctx.world_size, config["batch"], config["steps"], config["warmup"])
    if config["framework"] == "torch":
        return torch_steps(*args)
    if config["framework"] == "tensorflow":
        return tensorflow_steps(worker.tf_strategy(), *args)
    return mxnet_steps(worker.mxnet_kvstore(), *args)


def run_raykube(cluster: Any, run: RunConfig, storage: str) -> dict[str, Any]:
    """One run through ``raykube.train``; start-up counts from the call."""
    import raykube

    called = time.time()
    result = raykube.train(
        raykube_loop, framework=run.framework, cluster=cluster, num_workers=run.workers,
        storage_path=storage, name=f"bench-{run.framework}-{os.urandom(3).hex()}",
        config={"framework": run.framework, "batch": run.batch, "steps": run.steps,
                "warmup": run.warmup},
    )
    timing = dict(result.return_value)
    timing["startup_s"] = timing.pop("first_step_at") - called
    return timing


def run_native(run: RunConfig) -> dict[str, Any]:
    """One run with the framework's own launcher; start-up counts from the launch."""
    env = {**os.environ, **single_thread_env(), "TF_USE_LEGACY_KERAS": "1"}
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "timing.json")
        worker_args = [str(HERE / "native_worker.py"), run.framework, "--batch", str(run.batch),
                       "--steps", str(run.steps), "--warmup", str(run.warmup), "--out", out]
        launched = time.time()
        if run.framework == "torch":
            subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            f"--nproc_per_node={run.workers}", *worker_args],
                           env=env, check=True, capture_output=True, timeout=900)
        elif run.framework == "tensorflow":
            ports = [free_port() for _ in range(run.workers)]
            procs = []
            for index in range(run.workers):
                tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                             "task": {"type": "worker", "index": index}}
                worker_env = {**env, "TF_CONFIG": json.dumps(tf_config)} if run.workers > 1 \
                    else env
                procs.append(subprocess.Popen([sys.executable, *worker_args], env=worker_env,
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))
            _wait_all(procs)
        else:
            _launch_ps_lite(run, worker_args, env)
        timing = json.loads(Path(out).read_text())
    timing["startup_s"] = timing.pop("first_step_at") - launched
    return timing


def _wait_all(procs: list[subprocess.Popen[bytes]]) -> None:
    codes = [p.wait(timeout=900) for p in procs]
    if any(codes):
        raise RuntimeError(f"native workers exited with {codes}")


def _launch_ps_lite(run: RunConfig, worker_args: list[str], env: dict[str, str]) -> None:
    """A plain ps-lite MXNet run: scheduler, one server, N workers (as MXNet's launch.py does
    locally)."""
    python = str(MXNET_PYTHON)
    if run.workers == 1:
        _wait_all([subprocess.Popen([python, *worker_args], env=env)])
        return
    ps_env = {**env, "DMLC_PS_ROOT_URI": "127.0.0.1", "DMLC_NODE_HOST": "127.0.0.1",
              "DMLC_PS_ROOT_PORT": str(free_port()),
              "DMLC_NUM_SERVER": "1", "DMLC_NUM_WORKER": str(run.workers)}
    serve_code = ("import numpy as np; np.bool = getattr(np, 'bool', bool); import mxnet")
    helpers = [subprocess.Popen([python, "-c", serve_code], env={**ps_env, "DMLC_ROLE": role},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for role in ("scheduler", "server")]
    workers = [subprocess.Popen([python, *worker_args], env={**ps_env, "DMLC_ROLE": "worker"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for _ in range(run.workers)]
    try:
        _wait_all(workers)
    finally:
        for helper in helpers:  # the workers skipped ps-lite's exit barrier: stop the rest
            helper.kill()
            helper.wait()


def configs(framework: str, batch: int, steps: int, warmup: int, quick: bool) -> list[RunConfig]:
    """Baseline, weak and strong scaling configurations (quick: baseline and weak only)."""
    runs = [RunConfig(framework, 1, batch, "baseline", steps, warmup),
            RunConfig(framework, 2, batch, "weak", steps, warmup)]
    if not quick:
        runs.append(RunConfig(framework, 2, batch // 2, "strong", steps, warmup))
    return runs


def available_frameworks(quick: bool) -> list[str]:
    """torch always; TensorFlow and MXNet in full runs where their environments exist."""
    import importlib.util

    found = ["torch"]
    if quick:
        return found
    if importlib.util.find_spec("tensorflow") is not None:
        found.append("tensorflow")
    if MXNET_PYTHON.exists():
        found.append("mxnet")
    return found


def bench_training(cluster: Any, storage: str, *, quick: bool, repeats: int,
                   progress: Any) -> list[dict[str, Any]]:
    """Every configuration under both launchers; medians over ``repeats``. The first row is
    the hardware ceiling of two workers (see :func:`hardware_ceiling`)."""
    if MXNET_PYTHON.exists():
        os.environ["RAYKUBE_MXNET_PYTHON"] = str(MXNET_PYTHON)
    # Full: a per-worker batch large enough that compute outweighs the all-reduce of the
    # 1.1M gradients (at 256 per worker even the native runs were communication-bound).
    steps, warmup, batch = (8, 3, 32) if quick else (30, 5, 2048)
    progress("training: hardware ceiling (two unsynchronised workers)")
    ceilings = [hardware_ceiling(batch, steps, warmup) for _ in range(repeats)]
    rows: list[dict[str, Any]] = [{"framework": "torch", "launcher": "none (2 processes, no sync)",
                                   "workers": 2, "scaling": "ceiling", "batch_per_worker": batch,
                                   "efficiency": statistics.median(ceilings), "runs": repeats}]
    for framework in available_frameworks(quick):
        for run in configs(framework, batch, steps, warmup, quick):
            for launcher in ("raykube", "native"):
                samples = []
                for repeat in range(repeats):
                    progress(f"training {framework} {run.scaling} x{run.workers} {launcher} "
                             f"({repeat + 1}/{repeats})")
                    samples.append(run_raykube(cluster, run, storage) if launcher == "raykube"
                                   else run_native(run))
                rows.append({
                    "framework": framework, "launcher": launcher, "workers": run.workers,
                    "scaling": run.scaling, "batch_per_worker": run.batch,
                    "samples_per_s": statistics.median(s["samples_per_s"] for s in samples),
                    "startup_s": statistics.median(s["startup_s"] for s in samples),
                    "runs": len(samples),
                })
    return rows


def hardware_ceiling(batch: int, steps: int, warmup: int) -> float:
    """Two independent single-thread workers (no synchronisation) against one: the most any
    launcher can get from two workers on this machine (shared caches, memory bandwidth)."""
    code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); from workloads import "
            "apply_single_thread_env, torch_steps; apply_single_thread_env(); "
            f"print(json.dumps(torch_steps(0, 1, {batch}, {steps}, {warmup})))")
    env = {**os.environ, **single_thread_env()}

    def together(n: int) -> float:
        procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                  text=True, env=env) for _ in range(n)]
        return sum(json.loads(p.communicate(timeout=600)[0])["samples_per_s"] for p in procs)

    return together(2) / (2 * together(1))


def summarise_training(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Efficiency per launcher and scaling, and the raykube/native ratio per configuration."""
    def find(framework: str, launcher: str, scaling: str) -> dict[str, Any] | None:
        return next((r for r in rows if r["framework"] == framework
                     and r["launcher"] == launcher and r["scaling"] == scaling), None)

    out = []
    rows = [r for r in rows if r["scaling"] != "ceiling"]
    for framework in sorted({r["framework"] for r in rows}):
        for scaling in ("weak", "strong"):
            entry: dict[str, Any] = {"framework": framework, "scaling": scaling}
            for launcher in ("raykube", "native"):
                base, two = find(framework, launcher, "baseline"), find(framework, launcher,
                                                                        scaling)
                if base and two:
                    entry[f"efficiency_{launcher}"] = two["samples_per_s"] / (
                        2 * base["samples_per_s"])
            ray_two, native_two = find(framework, "raykube", scaling), find(framework, "native",
                                                                            scaling)
            if ray_two and native_two:
                entry["raykube_over_native_2w"] = (ray_two["samples_per_s"]
                                                   / native_two["samples_per_s"])
            if len(entry) > 2:
                out.append(entry)
    return out
