"""Judged rollouts on the local cluster, under steady generated load with every request counted:
a healthy new version walks every step and is promoted with no failed request; one that fails
20% of its requests, one that answers 5x slower and one that is less accurate (judged through
feedback) are each rolled back at the first step, the failures confined to the new version's
share, and afterwards the old version serves everything and the status says why."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import raykube
from conftest import run_cli
from raykube.errors import ServeError
from raykube.serving.rollout import PROMOTED, ROLLED_BACK
from raykube.serving.service import Service, deploy, get_service
from raykube.specs.serve import ServeSpec, parse_serve_spec
from raykube.waiting import wait_for
from support.load import Load

pytestmark = pytest.mark.local

PREDICTORS = Path(__file__).resolve().parent / "predictors"
ROW = [3.0, 1.0, 2.0, 3.0]  # the Classifier's class for it: 3
# The p99 bound sits where the slow canary (every request over 100 ms: all in the 100-250 ms
# bucket, so p99 = 248.5 ms or more) always fails it, and a healthy one (20 ms) fails it only
# if 15% of its requests took over 100 ms, which a busy 2-core machine does not reach.
POLICY = {"steps": [25, 100], "stepSeconds": 3, "minRequests": 30, "maxErrorRate": 0.05,
          "maxLatencyP99Ms": 240, "minAccuracy": 0.8, "maxAccuracyDrop": 0.1,
          "minFeedback": 20, "stepTimeoutSeconds": 120}


def faults(folder: Path, version: str, **settings: float) -> dict[str, Any]:
    checkpoint = folder / f"{version}.json"
    checkpoint.write_text(json.dumps({"delay_s": 0.02, **settings}))
    return {"version": version, "checkpoint": str(checkpoint)}


def classifier(name: str, versions: list[dict[str, Any]], rollout: bool) -> ServeSpec:
    weights = [100] + [0] * (len(versions) - 1)
    data: dict[str, Any] = {
        "kind": "Serve", "name": name, "framework": "torch", "predictor": "probes:Classifier",
        "workingDir": str(PREDICTORS), "replicas": 1, "resources": {"cpus": 0.25},
        "batching": {"maxBatchSize": 1, "batchWaitTimeoutS": 0},
        "versions": [{**v, "weight": w} for v, w in zip(versions, weights, strict=True)]}
    if rollout:
        data["rollout"] = POLICY
    return parse_serve_spec(data)


@pytest.fixture()
def service_name(local_cluster: raykube.Cluster, request: pytest.FixtureRequest
                 ) -> Iterator[str]:
    name = "ro-" + request.node.name.removeprefix("test_").replace("_", "-")[:20].strip("-")
    yield name
    try:
        get_service(name, local_cluster).delete()
    except ServeError:
        pass


def roll_out(cluster: raykube.Cluster, name: str, folder: Path, **canary: float
             ) -> tuple[Service, Load]:
    """v1 (healthy) alone, then a judged rollout of v2 with ``canary``'s faults under load
    from 4 clients that send feedback on every answer."""
    v1 = faults(folder, "v1")
    deploy(classifier(name, [v1], rollout=False), cluster)
    url = get_service(name, cluster).url
    with Load(url, clients=4, body={"instances": [ROW]},
              feedback=lambda body: int(body["instances"][0][0]) % 10) as load:
        load.wait_for_requests(20)
        service = deploy(classifier(name, [v1, faults(folder, "v2", **canary)], rollout=True),
                         cluster)
        load.wait_for_requests(20)
    return service, load


def test_a_healthy_version_walks_every_step_and_is_promoted(
        local_cluster: raykube.Cluster, service_name: str, tmp_path: Path) -> None:
    service, load = roll_out(local_cluster, service_name, tmp_path)
    result = service.last_rollout
    assert result is not None and result.verdict == PROMOTED, result
    assert [(s.percent, s.passed) for s in result.steps] == [(25, True), (100, True)]
    assert load.failures == [], "the shifts themselves fail no request"
    status = service.status()
    assert [(v.version, v.weight) for v in status.versions] == [("v2", 100)]
    assert status.last_rollout is not None and status.last_rollout.verdict == PROMOTED


def rolled_back(local_cluster: raykube.Cluster, name: str, folder: Path, reason: str,
                **canary: float) -> Load:
    service, load = roll_out(local_cluster, name, folder, **canary)
    result = service.last_rollout
    assert result is not None and result.verdict == ROLLED_BACK, result
    assert [s.percent for s in result.steps] == [25], "rolled back at the first step"
    assert reason in result.reason, result.reason
    step = result.steps[0]
    assert step.canary["requests"] >= POLICY["minRequests"] and step.stable is not None
    status = service.status()
    assert [(v.version, v.weight) for v in status.versions] == [("v1", 100)]
    assert status.last_rollout is not None and reason in status.last_rollout.reason
    shown = run_cli("serve", "rollout", "status", name, "--cluster", local_cluster.name)
    assert f"rollout of v2 over v1: rolled back at 25%: {reason}" in shown.stdout, shown.stdout
    return load


def test_a_version_that_fails_a_fifth_of_requests_is_rolled_back(
        local_cluster: raykube.Cluster, service_name: str, tmp_path: Path) -> None:
    load = rolled_back(local_cluster, service_name, tmp_path, "error rate", fail=0.2)
    assert set(load.failed) == {"v2"}, f"only the canary's requests failed: {load.failed}"
    assert load.answers["v1"] > load.failed["v2"]


def test_a_five_times_slower_version_is_rolled_back_on_latency(
        local_cluster: raykube.Cluster, service_name: str, tmp_path: Path) -> None:
    load = rolled_back(local_cluster, service_name, tmp_path, "p99", delay_s=0.1)
    assert load.failures == []


def test_a_less_accurate_version_is_rolled_back_on_feedback(
        local_cluster: raykube.Cluster, service_name: str, tmp_path: Path) -> None:
    load = rolled_back(local_cluster, service_name, tmp_path, "accuracy", wrong=0.5)
    assert load.failures == []


def test_a_person_aborts_a_running_rollout(
        local_cluster: raykube.Cluster, service_name: str, tmp_path: Path) -> None:
    """`raykube serve rollout abort` while a rollout waits out a long step: the stable version
    gets all traffic back, the canary goes, and the running rollout sees it and stops."""
    import threading

    from raykube.serving.rollout import STOPPED

    v1 = faults(tmp_path, "v1")
    deploy(classifier(service_name, [v1], rollout=False), local_cluster)
    url = get_service(service_name, local_cluster).url
    long_step = classifier(service_name, [v1, faults(tmp_path, "v2")], rollout=True)
    assert long_step.rollout is not None
    long_step = long_step.model_copy(update={"rollout": long_step.rollout.model_copy(
        update={"step_seconds": 600.0})})
    outcome: list[Any] = []
    with Load(url, clients=2, body={"instances": [ROW]}) as load:
        rolling = threading.Thread(
            target=lambda: outcome.append(deploy(long_step, local_cluster).last_rollout))
        rolling.start()
        wait_for(lambda: (s := get_service(service_name, local_cluster).status()).last_rollout
                 and s.last_rollout.steps == []
                 and ("v2", 25) in [(v.version, v.weight) for v in s.versions],
                 timeout=120, what="the rollout's first step under way")
        aborted = run_cli("serve", "rollout", "abort", service_name, "--cluster",
                          local_cluster.name)
        assert aborted.returncode == 0, aborted.stderr
        assert "stopped: abort by a person: v1 gets all traffic, v2 goes" in aborted.stdout
        rolling.join(timeout=120)
        assert not rolling.is_alive()
    assert outcome[0].verdict == STOPPED, outcome
    status = get_service(service_name, local_cluster).status()
    assert [(v.version, v.weight) for v in status.versions] == [("v1", 100)]
    assert status.last_rollout is not None and status.last_rollout.verdict == STOPPED
    assert load.failures == []
    again = run_cli("serve", "rollout", "abort", service_name, "--cluster", local_cluster.name)
    assert again.returncode == 9 and "no rollout of service" in again.stderr
