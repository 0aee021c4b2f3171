"""Head loss on a local cluster with GCS fault tolerance on a real Redis (Debian's redis-server,
started here): every process of the head is killed, `raykube up` starts the head again, and
what ran on the workers is still there.

Its own cluster (the session cluster keeps its state in memory): a head that takes no work and
two fixed CPU workers.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import raykube
from raykube.backends.local.processes import (
    find_head_processes,
    find_node_processes,
    worker_node_ids,
)
from raykube.backends.local.state import LocalRecord
from raykube.serving.service import Service, deploy
from raykube.specs.cluster import parse_spec
from raykube.submission.jobs import JobState, submit
from raykube.waiting import wait_for

from conftest import assert_clean_error, free_port, run_cli
from support.load import Load
from support.redis_server import REDIS, RedisServer
from test_serving import ROW, probe_spec

pytestmark = pytest.mark.local


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real Redis on a free loopback port, without persistence."""
    if REDIS is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


def ft_spec(name: str, redis_address: str, tmp_path: Path) -> raykube.ClusterSpec:
    return parse_spec({
        "name": name,
        "headGroupSpec": {"rayStartParams": {"num-cpus": "0"}},
        "workerGroupSpecs": [{"groupName": "cpu", "replicas": 2, "minReplicas": 2,
                              "maxReplicas": 2, "cpu": 1, "memory": "1Gi"}],
        "gcsFaultToleranceOptions": {"redisAddress": redis_address},
        "storage": {"path": str(tmp_path / "storage")},
    }, source="test")


def served_from_every_replica_node(service: Service) -> bool:
    """Whether every node that holds one of the service's replicas (router and model) has a
    healthy proxy of its own: the steady state in which the head's loss costs no route."""
    status = service.status()
    nodes = {r.node_id for v in status.versions for r in v.replicas}
    return bool(nodes) and all(status.proxies.get(n) == "HEALTHY" for n in nodes if n)


def kill_head(marker: str) -> list[int]:
    """SIGKILL every process of the head, as a lost machine would; their PIDs."""
    pids = find_head_processes(marker)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: not find_head_processes(marker), timeout=30, what="the head to die")
    return pids


def test_head_killed_and_started_again_keeps_workers_actors_jobs_and_serving(
        redis: RedisServer, tmp_path: Path) -> None:
    import ray

    from raykube.connection import ensure_connected

    ray.shutdown()  # this test's driver connects to its own cluster
    spec = ft_spec("rk-headloss", redis.address, tmp_path)
    cluster = raykube.up(spec, timeout=180)
    try:
        record = LocalRecord.load(spec.name)
        assert record is not None
        job = submit(cluster, "python -c \"print('the job ran')\"")
        assert job.wait(timeout=120).state == JobState.SUCCEEDED

        ensure_connected(cluster)

        @ray.remote(num_cpus=0)
        class Counter:
            def __init__(self) -> None:
                self.count = 0

            def add(self) -> int:
                self.count += 1
                return self.count

            def node(self) -> str:
                return ray.get_runtime_context().get_node_id()

        workers = [n["NodeID"] for n in ray.nodes() if n["Alive"] and not n.get(
            "Resources", {}).get("node:__internal_head__")]
        counter = Counter.options(  # type: ignore[attr-defined]
            name="counter", namespace="headloss", lifetime="detached",
            scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                workers[0], soft=False)).remote()
        assert ray.get([counter.add.remote() for _ in range(3)])[-1] == 3
        ray.shutdown()

        (tmp_path / "healthy").write_text("")
        service = deploy(probe_spec("ha", "Flaky", str(tmp_path / "healthy"), replicas=2),
                         cluster)
        wait_for(lambda: served_from_every_replica_node(service), timeout=60,
                 what="a healthy Serve proxy on every node with a replica of the service")
        nodes_before = worker_node_ids(record.marker)
        raylets_before = {n: sorted(find_node_processes(record.marker, n)) for n in nodes_before}
        assert len(nodes_before) == 2

        with Load(service.url, clients=2, body={"instances": [ROW]}) as load:
            load.wait_for_requests(100)
            kill_head(record.marker)
            # The head is gone: Serve answers from the proxies and replicas on the workers.
            during = load.count
            load.wait_for_requests(100, timeout=60)
            answered_while_down = load.count - during - len(load.failures)
            assert not find_head_processes(record.marker)
            result = run_cli("up", str(_spec_file(spec, tmp_path)), timeout=300)
            assert result.returncode == 0, result.stderr[-3000:]
            load.wait_for_requests(40)
        print(f"head loss: {load.count} requests, {len(load.failures)} failed, "
              f"{answered_while_down} answered while the head was down: {load.failures[:3]}")
        assert answered_while_down >= 90
        assert load.failures == [], load.failures[:3]

        # The same worker nodes, their processes never restarted.
        assert worker_node_ids(record.marker) == nodes_before
        for node, pids in raylets_before.items():
            assert set(pids) <= set(find_node_processes(record.marker, node))
        status = cluster.wait(timeout=120)
        assert {n.node_id for n in status.nodes if n.alive and n.group == "cpu"} >= set(workers)

        # The detached actor kept its state; the job's record survived.
        ensure_connected(cluster)
        counter = ray.get_actor("counter", namespace="headloss")
        assert ray.get(counter.add.remote()) == 4
        ray.shutdown()
        assert job.status() == JobState.SUCCEEDED
    finally:
        cluster.down()
    assert not [k for k in redis.keys() if k.startswith(record.marker)], "down cleared Redis"


def _spec_file(spec: raykube.ClusterSpec, tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(spec.to_yaml())
    return path


def test_a_redis_that_does_not_answer_is_refused_before_anything_starts(
        tmp_path: Path) -> None:
    path = _spec_file(ft_spec("rk-noredis", f"127.0.0.1:{free_port()}", tmp_path), tmp_path)
    result = run_cli("up", str(path), timeout=60)
    assert_clean_error(result, 8, "redisAddress", "no Redis answers", "redis-server")
    assert LocalRecord.load("rk-noredis") is None
