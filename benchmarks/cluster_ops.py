"""Cluster operations: up to ready against bare Ray, autoscaler reaction, idle scale-down, and
job submission latency against Ray's own Jobs SDK, all on this machine in one session."""

from __future__ import annotations

import statistics
import time
from typing import Any

from raykube.specs.cluster import ClusterSpec, parse_spec
from raykube.waiting import wait_for


def fixed_spec(name: str) -> ClusterSpec:
    """A head that runs no work and two 1-CPU workers: the shape every figure uses."""
    return parse_spec({
        "name": name,
        "headGroupSpec": {"rayStartParams": {"num-cpus": "0"}},
        "workerGroupSpecs": [{"groupName": "cpu", "replicas": 2, "minReplicas": 2,
                              "maxReplicas": 2, "cpu": 1, "memory": "1Gi"}],
    })


def autoscaling_spec(name: str, idle_seconds: int) -> ClusterSpec:
    """A CPU group that starts empty and may grow to one worker."""
    return parse_spec({
        "name": name,
        "headGroupSpec": {"rayStartParams": {"num-cpus": "0"}},
        "workerGroupSpecs": [{"groupName": "cpu", "replicas": 0, "minReplicas": 0,
                              "maxReplicas": 1, "cpu": 1, "memory": "1Gi"}],
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"idleTimeoutSeconds": idle_seconds},
    })


def up_seconds(name: str) -> float:
    """raykube up of :func:`fixed_spec` until every worker joined, then down (not timed)."""
    import raykube

    started = time.perf_counter()
    cluster = raykube.up(fixed_spec(name), timeout=180)
    seconds = time.perf_counter() - started
    cluster.down()
    return seconds


def bare_ray_seconds() -> float:
    """The same nodes with Ray's own test cluster (ray start per node, no raykube)."""
    from ray.cluster_utils import Cluster

    started = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    seconds = time.perf_counter() - started
    cluster.shutdown()
    return seconds


def autoscaler_reaction(cluster: Any, *, wait_removed: bool) -> dict[str, float]:
    """On ``cluster``, whose only group ``cpu`` is empty and autoscaled, ask for a 1-CPU task:
    seconds until the autoscaler's new worker joined Ray and until the task ran on it; with
    ``wait_removed``, also from the task's end until the idle worker was removed."""
    import ray

    from raykube.connection import ensure_connected

    ensure_connected(cluster)

    @ray.remote(num_cpus=1)
    def stamp() -> float:
        return time.time()

    def cpu_workers() -> int:
        return int(cluster.status().group("cpu").ready)

    try:
        asked = time.time()
        pending = stamp.remote()
        wait_for(lambda: cpu_workers() == 1, timeout=300, interval=0.2,
                 what="the autoscaled worker to join Ray")
        result = {"demand_to_joined_s": time.time() - asked}
        result["demand_to_running_s"] = ray.get(pending, timeout=300) - asked
        done = time.time()
        if wait_removed:
            wait_for(lambda: cpu_workers() == 0, timeout=300, interval=0.2,
                     what="the idle worker removed")
            result["idle_to_removed_s"] = time.time() - done
        return result
    finally:
        ray.shutdown()


def autoscaler_seconds(idle_seconds: int) -> dict[str, float]:
    """The autoscaler's reaction on the local backend, up and down."""
    import raykube

    cluster = raykube.up(autoscaling_spec("rk-bench-autoscale", idle_seconds), timeout=180)
    try:
        return {**autoscaler_reaction(cluster, wait_removed=True),
                "idle_timeout_s": float(idle_seconds)}
    finally:
        cluster.down()


def job_seconds(cluster: Any, repeats: int) -> dict[str, float]:
    """Submit -> SUCCEEDED for a trivial job: raykube.submit vs Ray's JobSubmissionClient."""
    from ray.job_submission import JobStatus

    import raykube
    from raykube.submission.jobs import client_for

    ours, theirs = [], []
    sdk = client_for(cluster)
    for _ in range(repeats):
        started = time.perf_counter()
        raykube.submit(cluster, "python -c pass").wait(timeout=120)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        job_id = sdk.submit_job(entrypoint="python -c pass")
        wait_for(lambda j=job_id: sdk.get_job_status(j) == JobStatus.SUCCEEDED, timeout=120,
                 interval=0.05, what="the job")
        theirs.append(time.perf_counter() - started)
    return {"raykube_submit_to_done_s": statistics.median(ours),
            "ray_sdk_submit_to_done_s": statistics.median(theirs)}


def bench_lifecycle(*, repeats: int, progress: Any) -> dict[str, Any]:
    """Up to ready (raykube vs bare Ray) and the autoscaler's reaction; run with no other
    cluster up, so the machine is quiet."""
    ups, bares = [], []
    for repeat in range(repeats):
        progress(f"cluster ops: up to ready ({repeat + 1}/{repeats})")
        ups.append(up_seconds("rk-bench-up"))
        bares.append(bare_ray_seconds())
    result: dict[str, Any] = {"raykube_up_s": statistics.median(ups),
                              "bare_ray_up_s": statistics.median(bares)}
    result["up_ratio"] = result["raykube_up_s"] / result["bare_ray_up_s"]
    progress("cluster ops: autoscaler reaction")
    result.update(autoscaler_seconds(idle_seconds=5))
    return result
