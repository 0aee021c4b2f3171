"""Serving latency and throughput: a raykube service against the same model on plain uvicorn.

Both answer the same JSON protocol with the same predictor (jobs/digits_serving.TorchDigits);
client threads send one-instance requests at several concurrency levels, each request over a
new HTTP connection for both. Reported per level: p50/p95/p99 latency and requests/s, and the
Serve/plain ratios.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.machine import free_port
from raykube.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = [[0.5] * 64]


def make_checkpoint(folder: Path) -> str:
    """A checkpoint of the digits MLP as raykube's worker.report writes it (weights as built:
    latency does not depend on training)."""
    sys.path.insert(0, str(ROOT / "jobs"))
    from train_torch import build_model

    from raykube.frameworks.state import write_state

    write_state(folder, {"model": build_model().state_dict(), "epoch": 0})
    return str(folder)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def load_test(url: str, concurrency: int, requests_per_client: int) -> dict[str, float]:
    """Latency percentiles (ms) and throughput (req/s) of ``concurrency`` clients."""
    import json

    body = json.dumps({"instances": INSTANCE}).encode()
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def client() -> None:
        for _ in range(requests_per_client):
            request = urllib.request.Request(url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    response.read()
            except OSError:
                with lock:
                    failures[0] += 1
                continue
            with lock:
                latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"p50_ms": 1000 * percentile(latencies, 50), "p95_ms": 1000 * percentile(latencies, 95),
            "p99_ms": 1000 * percentile(latencies, 99), "req_per_s": len(latencies) / wall,
            "failures": failures[0]}


def _answers(url: str) -> bool:
    import json

    try:
        request = urllib.request.Request(url, data=json.dumps({"instances": INSTANCE}).encode(),
                                         method="POST")
        with urllib.request.urlopen(request, timeout=5):
            return True
    except OSError:
        return False


def bench_serving(cluster: Any, *, quick: bool, progress: Any) -> list[dict[str, Any]]:
    """Both servers at each concurrency level; the plain server runs while Serve is idle."""
    from raykube.serving.service import deploy
    from raykube.specs.serve import parse_serve_spec

    levels = [1, 4] if quick else [1, 4, 16]
    per_client = 20 if quick else 200
    folder = Path(tempfile.mkdtemp(prefix="rk-bench-ckpt-"))
    checkpoint = make_checkpoint(folder)
    def spec(name: str, metrics: bool) -> Any:
        return parse_serve_spec({
            "kind": "Serve", "name": name, "framework": "torch",
            "predictor": "digits_serving:TorchDigits", "workingDir": str(ROOT / "jobs"),
            "versions": [{"version": "v1", "checkpoint": checkpoint}],
            "replicas": 1, "resources": {"cpus": 1}, "maxOngoingRequests": 32,
            "batching": {"maxBatchSize": 8, "batchWaitTimeoutS": 0}, "metrics": metrics,
        })

    port = free_port()
    plain_url = f"http://127.0.0.1:{port}/digits"
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "plain_server.py"), "--port", str(port),
         "--checkpoint", checkpoint], env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows: list[dict[str, Any]] = []
    try:
        wait_for(lambda: _answers(plain_url), timeout=60, what="the plain uvicorn server")
        # The same service with raykube's metrics on and off, both up at once (one replica's
        # CPU each) and measured in alternating rounds, so drift hits both alike; then the
        # plain server while Serve is idle.
        progress("serving: deploying bench (metrics on) and bench-off (metrics off)")
        services = {"raykube": deploy(spec("bench", True), cluster),
                    "raykube-no-metrics": deploy(spec("bench-off", False), cluster)}
        try:
            for url in (s.url for s in services.values()):
                load_test(url, 2, 10)  # warm-up: connections, first batches
            for level in levels:
                rounds: dict[str, list[dict[str, float]]] = {name: [] for name in services}
                for index in range(ROUNDS):
                    order = list(services.items())
                    for name, service in order if index % 2 == 0 else reversed(order):
                        progress(f"serving: {name} at concurrency {level}")
                        rounds[name].append(load_test(service.url, level,
                                                      max(1, per_client // ROUNDS)))
                rows += [{"server": name, "concurrency": level, **median_of(runs)}
                         for name, runs in rounds.items()]
        finally:
            for service in services.values():
                service.delete()
        _measure(plain_url, "plain", levels, per_client, rows, progress)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows


ROUNDS = 4
"""Rounds per concurrency level of the metrics-on and metrics-off services, in alternating
order (on, off; off, on; ...), so neither always runs first."""


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over ``runs`` (failures summed)."""
    import statistics

    return {key: (sum(r[key] for r in runs) if key == "failures"
                  else statistics.median(r[key] for r in runs)) for key in runs[0]}


def _measure(url: str, server_name: str, levels: list[int], per_client: int,
             rows: list[dict[str, Any]], progress: Any) -> None:
    load_test(url, 2, 10)  # warm-up: connections, first batches
    for level in levels:
        progress(f"serving: {server_name} at concurrency {level}")
        rows.append({"server": server_name, "concurrency": level,
                     **load_test(url, level, per_client)})


def summarise_serving(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per concurrency level: raykube / plain ratios, and what raykube's metrics cost
    (metrics on / off; the goal is within 5%: p50 <= 1.05, throughput >= 0.95)."""
    out = []
    for level in sorted({r["concurrency"] for r in rows}):
        ray, plain, bare = (next(r for r in rows if r["server"] == server
                                 and r["concurrency"] == level)
                            for server in ("raykube", "plain", "raykube-no-metrics"))
        out.append({"concurrency": level,
                    "p50_ratio": ray["p50_ms"] / plain["p50_ms"],
                    "p99_ratio": ray["p99_ms"] / plain["p99_ms"],
                    "throughput_ratio": ray["req_per_s"] / plain["req_per_s"],
                    "metrics_p50_ratio": ray["p50_ms"] / bare["p50_ms"],
                    "metrics_throughput_ratio": ray["req_per_s"] / bare["req_per_s"]})
    return out
