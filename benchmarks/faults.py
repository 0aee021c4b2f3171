"""Serving through faults and changes, under steady load: what each costs in failed requests,
latency and time to recover.

A raykube service (the digits MLP, two replicas) answers four client threads that send requests
back to back for the whole section; every request's start, latency and outcome is kept. Each
scenario injects one fault or change for real, then waits until the service is whole again:

- *replica killed*: SIGKILL to one model replica; whole when two replicas run, the dead one gone;
- *router replica killed*: SIGKILL to the router's replica (found by Ray's process title);
- *scale up* / *scale down*: the service deployed again with 3 replicas, then with 2;
- *node killed*: every process of the worker node that holds a model replica (its raylet, its
  workers); whole when two replicas run again (the autoscaler starts a new node);
- *rollout*: a new version deployed in place of the old one (start, shift, retire);
- *head killed* (full runs, where ``redis-server`` is installed): on a cluster of its own with
  GCS fault tolerance on a real Redis, SIGKILL to every process of the head, then ``raykube up``
  starts it again; whole when the head is back and both replicas still run.

Per scenario: requests sent from the injection until a short settle after recovery, how many
failed, p50/p99 in that window against the window of the same length before it (their ratio),
and the seconds to recover. Quick mode runs the replica kill and the rollout only.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.cluster_ops import fixed_spec
from benchmarks.serving import INSTANCE, ROOT, digits_service, make_checkpoint, percentile
from raykube.waiting import wait_for

sys.path.insert(0, str(ROOT / "tests"))  # the Redis launcher of the tests' support

SETTLE_S = 3.0
"""Seconds after recovery still counted to the event (a late failure is its failure too)."""

BEFORE_S = 5.0
"""The least length of the window before an event that its latency is compared with."""


@dataclass(frozen=True)
class Sample:
    """One request: when it started, how long it took, whether it was answered."""

    start: float
    seconds: float
    ok: bool


class TimedLoad:
    """Client threads sending one-instance requests back to back, each one kept."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._body = json.dumps({"instances": INSTANCE}).encode()
        self._threads = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(clients)]

    def _run(self) -> None:
        while not self._stop.is_set():
            request = urllib.request.Request(self.url, data=self._body, method="POST",
                                             headers={"Content-Type": "application/json"})
            start = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:
                    answer.read()
                ok = True
            except (OSError, urllib.error.HTTPError):
                ok = False
            with self._lock:
                self.samples.append(Sample(start, time.monotonic() - start, ok))

    def between(self, start: float, end: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if start <= s.start < end]

    def __enter__(self) -> TimedLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)


@dataclass(frozen=True)
class Scenario:
    """A fault or change: how it is injected, and when the service is whole again."""

    name: str
    injected: str
    inject: Callable[[], Any]
    whole: Callable[[Any], bool]
    """Called with what ``inject`` returned."""


def _latencies(samples: list[Sample]) -> tuple[float, float]:
    answered = [s.seconds for s in samples if s.ok]
    if not answered:
        return float("nan"), float("nan")
    return 1000 * percentile(answered, 50), 1000 * percentile(answered, 99)


def measure(load: TimedLoad, scenario: Scenario, progress: Callable[[str], None]
            ) -> dict[str, Any]:
    """Inject ``scenario`` under ``load``; its figures (see the module docstring)."""
    progress(f"faults: {scenario.name}")
    wait_for(lambda: len(load.between(time.monotonic() - BEFORE_S, time.monotonic())) >= 20,
             timeout=60, what="steady load before the event")
    started = time.monotonic()
    handle = scenario.inject()
    wait_for(lambda: scenario.whole(handle), timeout=300,
             what=f"the service whole again after: {scenario.name}")
    recovered = time.monotonic()
    end = recovered + SETTLE_S
    wait_for(lambda: time.monotonic() >= end and load.between(end, end + 60), timeout=60,
             what="requests after the settle window")
    during = load.between(started, end)
    before = load.between(started - max(BEFORE_S, end - started), started)
    p50_before, p99_before = _latencies(before)
    p50_during, p99_during = _latencies(during)
    return {"scenario": scenario.name, "injected": scenario.injected,
            "requests": len(during), "failed": sum(1 for s in during if not s.ok),
            "p50_before_ms": p50_before, "p99_before_ms": p99_before,
            "p50_during_ms": p50_during, "p99_during_ms": p99_during,
            "p99_ratio": p99_during / p99_before, "recover_s": recovered - started}


def bench_faults(cluster: Any, *, quick: bool, progress: Callable[[str], None]
                 ) -> list[dict[str, Any]]:
    """Every scenario in turn on one service under one load (quick: two of them)."""
    from raykube.serving.service import deploy

    checkpoint = make_checkpoint(Path(tempfile.mkdtemp(prefix="rk-bench-faults-")))

    def spec(version: str, replicas: int) -> Any:
        return _service_spec(checkpoint, version, replicas)

    progress("faults: deploying the service (2 replicas)")
    service = deploy(spec("v1", 2), cluster)

    def replicas(version: str) -> list[Any]:
        status = service.status()
        return [r for v in status.versions if v.version == version for r in v.replicas
                if r.state == "RUNNING"] if status.is_running else []

    def kill_replica() -> set[int]:
        pids = {r.pid for r in replicas("v1") if r.pid}
        os.kill(min(pids), signal.SIGKILL)
        return {min(pids)}

    def whole_without(gone: set[int]) -> bool:
        running = replicas("v1")
        return len(running) == 2 and not gone & {r.pid for r in running}

    def kill_router() -> set[int]:
        pids = _router_pids("faults")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return pids

    def router_back(gone: set[int]) -> bool:
        return bool(_router_pids("faults") - gone) and len(replicas("v1")) == 2

    def kill_node() -> set[int]:
        victim = replicas("v1")[0]
        gone = {r.pid for r in replicas("v1") if r.node_id == victim.node_id and r.pid}
        for pid in _node_pids(cluster.name, victim.node_id):
            os.kill(pid, signal.SIGKILL)
        return gone

    scenarios = [Scenario("replica killed", "SIGKILL to one of 2 model replicas",
                          kill_replica, whole_without)]
    if not quick:
        scenarios += [
            Scenario("router replica killed", "SIGKILL to the router's replica", kill_router,
                     router_back),
            Scenario("scale up", "deployed again with 3 replicas (was 2)",
                     lambda: deploy(spec("v1", 3), cluster),
                     lambda _: len(replicas("v1")) == 3),
            Scenario("scale down", "deployed again with 2 replicas (was 3)",
                     lambda: deploy(spec("v1", 2), cluster),
                     lambda _: len(replicas("v1")) == 2),
            Scenario("node killed", "SIGKILL to every process of a replica's worker node",
                     kill_node, whole_without)]
    scenarios.append(Scenario("rollout", "v2 deployed in place of v1 (start, shift, retire)",
                              lambda: deploy(spec("v2", 2), cluster),
                              lambda _: len(replicas("v2")) == 2))
    rows = []
    try:
        with TimedLoad(service.url, clients=4) as load:
            for scenario in scenarios:
                rows.append(measure(load, scenario, progress))
    finally:
        service.delete()
    if not quick:
        rows += bench_head_loss(checkpoint, progress)
    return rows


def _service_spec(checkpoint: str, version: str, replicas: int) -> Any:
    """The benchmarked service: the digits MLP, ``replicas`` replicas of 0.25 CPU."""
    return digits_service("faults", checkpoint, replicas=replicas, resources={"cpus": 0.25},
                          versions=[{"version": version, "checkpoint": checkpoint}],
                          batching={"maxBatchSize": 8, "batchWaitTimeoutS": 0.01})


def bench_head_loss(checkpoint: str, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """The head killed under load, on a cluster of the benchmark's shape with GCS fault
    tolerance on a real Redis; no row where ``redis-server`` is not installed."""
    import raykube
    from raykube.backends.local.processes import find_head_processes
    from raykube.backends.local.state import LocalRecord
    from raykube.serving.service import deploy
    from raykube.specs.cluster import GcsFaultToleranceOptions
    from support.redis_server import REDIS, RedisServer

    if REDIS is None:
        progress("faults: head killed: skipped, redis-server is not installed")
        return []
    with RedisServer(Path(tempfile.mkdtemp(prefix="rk-bench-redis-"))) as redis:
        spec = fixed_spec("rk-bench-ha").model_copy(update={
            "gcs_fault_tolerance_options": GcsFaultToleranceOptions.model_validate(
                {"redisAddress": redis.address})})
        progress("faults: starting a cluster with GCS fault tolerance (Redis "
                 f"{redis.address})")
        cluster = raykube.up(spec, timeout=180)
        try:
            record = LocalRecord.load(spec.name)
            assert record is not None
            service = deploy(_service_spec(checkpoint, "v1", 2), cluster)

            def kill_and_restart() -> None:
                for pid in find_head_processes(record.marker):
                    os.kill(pid, signal.SIGKILL)
                wait_for(lambda: not find_head_processes(record.marker), timeout=30,
                         what="the head to die")
                raykube.up(spec, timeout=180)  # starts the lost head again

            def whole(_: Any) -> bool:
                status = service.status()
                return status.is_running and len(status.version("v1").replicas) == 2

            with TimedLoad(service.url, clients=4) as load:
                return [measure(load, Scenario(
                    "head killed", "SIGKILL to every process of the head (GCS FT on Redis), "
                    "then `raykube up` starts it again", kill_and_restart, whole), progress)]
        finally:
            cluster.down()


def _router_pids(service: str) -> set[int]:
    """The processes of a service's router replicas, by the title Ray gives an actor's
    process (``ray::ServeReplica:<app>:<deployment>``)."""
    import psutil

    from raykube.render.serve_config import ROUTER_DEPLOYMENT

    title = f"ray::ServeReplica:{service}:{ROUTER_DEPLOYMENT}"
    found = set()
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if cmdline and cmdline[0].startswith(title):
            found.add(process.pid)
    return found


def _node_pids(cluster: str, node_id: str | None) -> list[int]:
    """Every process of one simulated node of a local cluster."""
    from raykube.backends.local.processes import find_node_processes
    from raykube.backends.local.state import LocalRecord

    record = LocalRecord.load(cluster)
    if record is None or node_id is None:
        return []
    return find_node_processes(record.marker, node_id)
