"""Serving latency and throughput, decomposed: plain uvicorn, a bare Serve deployment (with
Ray's Serve settings and with raykube's), and a raykube service, all the same predictor.

All answer the same JSON protocol with the same predictor (jobs/digits_serving.TorchDigits);
client threads send one-instance requests at several concurrency levels, over a new HTTP
connection per request and over one kept open. Reported per server, client and level:
p50/p95/p99 latency and requests/s; then the ratios that say where the time goes.
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


def load_test(url: str, concurrency: int, requests_per_client: int, *,
              keep_alive: bool = False) -> dict[str, float]:
    """Latency percentiles (ms) and throughput (req/s) of ``concurrency`` clients, each
    opening a new connection per request or (``keep_alive``) holding one open."""
    import http.client
    import json
    import urllib.parse

    body = json.dumps({"instances": INSTANCE}).encode()
    headers = {"Content-Type": "application/json"}
    parts = urllib.parse.urlsplit(url)
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def post(connection: http.client.HTTPConnection) -> None:
        connection.request("POST", parts.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")

    def client() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        for _ in range(requests_per_client):
            start = time.perf_counter()
            try:
                post(connection)
            except (OSError, http.client.HTTPException):
                with lock:
                    failures[0] += 1
                connection.close()
                continue
            finally:
                if not keep_alive:
                    connection.close()
            with lock:
                latencies.append(time.perf_counter() - start)
        connection.close()

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


SERVE_RAY_DEFAULTS = {
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1",
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1",
    "RAY_SERVE_LOG_TO_STDERR": "1",
}
"""Ray 2.60's own values of the settings raykube changes (SERVE_FAST_PATH_ENV): the second
cluster starts with these, so one run compares Serve as Ray ships it with Serve as raykube
starts it."""

CLIENTS = ("new-connection", "keep-alive")
"""A new TCP connection per request (what the issue's first figures used), or one held open."""

DEPLOYMENT_CPUS = 0.5
"""What each measured deployment reserves: up to seven replicas share the clusters' 1-CPU
workers (all on the same cores; the reservation only places them)."""


def _code_folder() -> str:
    """A working dir with the bare deployment beside the jobs it imports (jobs/ copied)."""
    import shutil

    folder = Path(tempfile.mkdtemp(prefix="rk-bench-code-")) / "code"
    shutil.copytree(ROOT / "jobs", folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "benchmarks" / "bare_serve.py", folder)
    return str(folder)


def _ray_defaults_spec(name: str) -> Any:
    from benchmarks.cluster_ops import fixed_spec

    spec = fixed_spec(name)
    spec.head_group_spec.env.update(SERVE_RAY_DEFAULTS)  # locally every node inherits the head's
    return spec


def _haproxy_spec(name: str) -> Any:
    """A cluster whose Serve answers HTTP through HAProxy straight to the ingress replicas
    (Serve's HAProxy ingress, with direct ingress: no proxy actor), or None where no
    ``haproxy`` is installed. Its files and ports are its own, not Serve's fixed defaults, so
    it runs beside other clusters on one machine."""
    import shutil

    haproxy = shutil.which("haproxy")
    if haproxy is None:
        return None
    # Short: Serve puts each node's files in <folder>/<node id>/, and HAProxy takes a socket
    # path of at most 97 characters.
    folder = tempfile.mkdtemp(prefix="rkh-", dir="/tmp")
    from benchmarks.cluster_ops import fixed_spec

    spec = fixed_spec(name)  # raykube's fast path, and HAProxy
    spec.head_group_spec.env.update({
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_BINARY_PATH": haproxy,
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{folder}/haproxy.cfg",
        "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{folder}/admin.sock",
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": folder,
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{folder}/server-state",
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
    })
    return spec


def digits_service(name: str, checkpoint: str, **fields: Any) -> Any:
    """The benchmarks' raykube service spec: the digits MLP behind the same predictor as every
    other server, one version; ``fields`` (the spec's YAML names) override the defaults."""
    from raykube.specs.serve import parse_serve_spec

    return parse_serve_spec({
        "kind": "Serve", "name": name, "framework": "torch",
        "predictor": "digits_serving:TorchDigits", "workingDir": str(ROOT / "jobs"),
        "versions": [{"version": "v1", "checkpoint": checkpoint}],
        "replicas": 1, "resources": {"cpus": DEPLOYMENT_CPUS}, "maxOngoingRequests": 32,
        "batching": {"maxBatchSize": 8, "batchWaitTimeoutS": 0}, **fields})


def bare_app(cluster: Any, checkpoint: str, code: str, replicas: int = 1) -> dict[str, Any]:
    """The Serve application of the bare deployment (``benchmarks/bare_serve.py``) on
    ``/bare``, its code from ``code`` (see :func:`_code_folder`) uploaded to ``cluster``."""
    return {
        "name": "bare", "route_prefix": "/bare", "import_path": "bare_serve:app",
        "args": {"checkpoint": checkpoint},
        "runtime_env": {"working_dir": cluster.upload_working_dir(code),
                        "env_vars": {"OMP_NUM_THREADS": "1"}},
        "deployments": [{"name": "Bare", "num_replicas": replicas, "max_ongoing_requests": 32,
                         "ray_actor_options": {"num_cpus": DEPLOYMENT_CPUS}}],
    }


def medians_in_turns(urls: dict[str, str], level: int, rounds: int, requests: int, *,
                     keep_alive: bool = False) -> dict[str, dict[str, float]]:
    """Each server's :func:`median_of` over ``rounds`` load tests at concurrency ``level``
    (``requests`` in all per test), the servers taking turns and the order rotating each round,
    so no server always runs first or right after another's load."""
    order = list(urls.items())
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
    for index in range(rounds):
        shift = index % len(order)
        for name, url in order[shift:] + order[:shift]:
            runs[name].append(load_test(url, level, max(2, requests // level),
                                        keep_alive=keep_alive))
    return {name: median_of(results) for name, results in runs.items()}


def _deploy_servers(cluster: Any, checkpoint: str, code: str, names: dict[str, str]
                    ) -> tuple[dict[str, str], list[Any]]:
    """The raykube services and the bare deployment ``names`` asks for on ``cluster``:
    ``{server name: URL}`` and the services to delete. ``names`` maps a role ("raykube",
    "raykube-no-metrics", "bare") to the server's name in the results."""
    from raykube.serving.service import _ServeApi, deploy

    urls: dict[str, str] = {}
    services = []
    for role in ("raykube", "raykube-no-metrics"):
        if role not in names:
            continue
        service = deploy(digits_service(role.replace("raykube", "bench"), checkpoint,
                                        metrics=role == "raykube"), cluster)
        services.append(service)
        urls[names[role]] = service.url
    api = _ServeApi(cluster)
    api.put(list(api.app_configs().values()) + [bare_app(cluster, checkpoint, code)])
    urls[names["bare"]] = f"{api.serve_url}/bare"
    wait_for(lambda: _answers(urls[names["bare"]]), timeout=180, what="the bare deployment")
    return urls, services


def _remove_bare(cluster: Any) -> None:
    from raykube.serving.service import _ServeApi

    api = _ServeApi(cluster)
    api.put([c for n, c in api.app_configs().items() if n != "bare"])


def bench_serving(cluster: Any, *, quick: bool, progress: Any) -> list[dict[str, Any]]:
    """Six servers of the same predictor, each level and client measured over every server in
    turn (the order rotating each round), medians of the rounds:

    - ``plain``: uvicorn, one process, no Ray;
    - ``serve-bare``: one bare Serve deployment, Ray's own Serve settings (a second cluster);
    - ``serve-bare-fast``: the same with raykube's (:data:`SERVE_FAST_PATH_ENV`);
    - ``raykube``: a raykube service (router, traffic shares, retries, metrics);
    - ``raykube-no-metrics``: the same without its metrics;
    - ``raykube-ray-defaults``: a raykube service with Ray's own Serve settings;
    - ``serve-bare-haproxy``, ``raykube-haproxy``: both behind Serve's HAProxy ingress (a
      third cluster; left out where ``haproxy`` is not installed).
    """
    import raykube
    from raykube.render.serve_config import SERVE_FAST_PATH_ENV

    assert set(SERVE_RAY_DEFAULTS) == set(SERVE_FAST_PATH_ENV)
    levels = [1, 4] if quick else [1, 4, 16]
    rounds = 1 if quick else 3
    requests = 40 if quick else 400
    checkpoint = make_checkpoint(Path(tempfile.mkdtemp(prefix="rk-bench-ckpt-")))
    code = _code_folder()
    port = free_port()
    plain_url = f"http://127.0.0.1:{port}/digits"
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "plain_server.py"), "--port", str(port),
         "--checkpoint", checkpoint], env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress("serving: a second cluster with Ray's own Serve settings")
    others = [raykube.up(_ray_defaults_spec("rk-bench-ray"), timeout=180)]
    layouts = [
        (cluster, {"raykube": "raykube", "raykube-no-metrics": "raykube-no-metrics",
                   "bare": "serve-bare-fast"}),
        (others[0], {"raykube": "raykube-ray-defaults", "bare": "serve-bare"})]
    haproxy = _haproxy_spec("rk-bench-haproxy")
    if haproxy is None:
        progress("serving: no haproxy installed: the HAProxy ingress figures are left out")
    else:
        progress("serving: a third cluster with Serve's HAProxy ingress")
        others.append(raykube.up(haproxy, timeout=180))
        layouts.append((others[1], {"raykube": "raykube-haproxy", "bare": "serve-bare-haproxy"}))
    services: list[Any] = []
    rows: list[dict[str, Any]] = []
    try:
        wait_for(lambda: _answers(plain_url), timeout=60, what="the plain uvicorn server")
        progress("serving: deploying the services and the bare deployments")
        urls = {"plain": plain_url}
        for target, names in layouts:
            deployed, more = _deploy_servers(target, checkpoint, code, names)
            urls.update(deployed)
            services += more
        for url in urls.values():
            load_test(url, 2, 10)  # warm-up: connections, first batches
        for level in levels:
            for client in CLIENTS:
                progress(f"serving: concurrency {level}, {client} client, {rounds} round(s)")
                medians = medians_in_turns(urls, level, rounds, requests,
                                           keep_alive=client == "keep-alive")
                rows += [{"server": name, "client": client, "concurrency": level, **figures}
                         for name, figures in medians.items()]
    finally:
        for service in services:
            if service.cluster.name == cluster.name:  # the other cluster's go with it
                service.delete()
        _remove_bare(cluster)
        for other in others:
            other.down()
        server.terminate()
        server.wait(timeout=30)
    return rows


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over ``runs`` (failures summed)."""
    import statistics

    return {key: (sum(r[key] for r in runs) if key == "failures"
                  else statistics.median(r[key] for r in runs)) for key in runs[0]}


def summarise_serving(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per client and level, the decomposition as ratios (latency: lower is better; throughput:
    higher): raykube over the bare deployment with the same settings (what raykube's router
    costs; goal p50 <= 1.15, throughput >= 0.9), raykube over plain uvicorn (goal p50 <= 4 at
    concurrency 1, throughput >= 0.25 at 16), the bare deployment over plain (Serve's own cost),
    raykube's Serve settings over Ray's own, and raykube's metrics (on / off; goal within 5%)."""
    out = []
    for client in CLIENTS:
        for level in sorted({r["concurrency"] for r in rows}):
            at = {r["server"]: r for r in rows
                  if r["client"] == client and r["concurrency"] == level}
            ray, plain, bare = at["raykube"], at["plain"], at["serve-bare-fast"]

            def ratio(top: dict[str, float], bottom: dict[str, float], key: str) -> float:
                return top[key] / bottom[key]

            out.append({
                "client": client, "concurrency": level,
                "p50_ratio": ratio(ray, plain, "p50_ms"),
                "p99_ratio": ratio(ray, plain, "p99_ms"),
                "throughput_ratio": ratio(ray, plain, "req_per_s"),
                "router_p50_ratio": ratio(ray, bare, "p50_ms"),
                "router_throughput_ratio": ratio(ray, bare, "req_per_s"),
                "serve_p50_ratio": ratio(bare, plain, "p50_ms"),
                "serve_throughput_ratio": ratio(bare, plain, "req_per_s"),
                "fast_path_p50_ratio": ratio(ray, at["raykube-ray-defaults"], "p50_ms"),
                "fast_path_throughput_ratio": ratio(ray, at["raykube-ray-defaults"],
                                                    "req_per_s"),
                "bare_fast_path_p50_ratio": ratio(bare, at["serve-bare"], "p50_ms"),
                "metrics_p50_ratio": ratio(ray, at["raykube-no-metrics"], "p50_ms"),
                "metrics_throughput_ratio": ratio(ray, at["raykube-no-metrics"], "req_per_s"),
            })
            if "raykube-haproxy" in at:
                hap, bare_hap = at["raykube-haproxy"], at["serve-bare-haproxy"]
                out[-1].update({
                    "haproxy_p50_ratio": ratio(hap, plain, "p50_ms"),
                    "haproxy_throughput_ratio": ratio(hap, plain, "req_per_s"),
                    "haproxy_router_p50_ratio": ratio(hap, bare_hap, "p50_ms"),
                    "haproxy_router_throughput_ratio": ratio(hap, bare_hap, "req_per_s"),
                    "haproxy_serve_p50_ratio": ratio(bare_hap, plain, "p50_ms"),
                })
    return out
