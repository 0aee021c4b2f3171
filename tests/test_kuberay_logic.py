"""The KubeRay backend's status, scale and diagnosis logic against a fake API client (plain
dicts, as the real client returns them); the same backend against the real control plane is
tests/test_kuberay.py."""

from __future__ import annotations

from typing import Any

import pytest

from raykube.backends.kuberay import state
from raykube.backends.kuberay.backend import KubeRayBackend
from raykube.errors import ScaleError
from support.fake_kube import FakeKube, pod, raycluster

pytestmark = pytest.mark.unit

HEAD_IP, CPU_A, CPU_B = "10.244.0.2", "10.244.0.3", "10.244.0.4"


def backend_with(*objects: dict[str, Any], joined: state.Joined) -> tuple[KubeRayBackend,
                                                                          FakeKube]:
    """A backend over a fake client holding ``objects``, whose head's dashboard reports the
    Ray nodes ``joined`` (None: it does not answer)."""
    kube = FakeKube()
    for obj in objects:
        kube.add(obj)
    backend = KubeRayBackend(namespace="default", kube=kube)  # type: ignore[arg-type]
    backend._ray_nodes = lambda name, namespace, pods: joined  # type: ignore[method-assign]
    return backend, kube


def demo(**groups: tuple[int, int, int]) -> dict[str, Any]:
    return raycluster("demo", groups or {"cpu": (2, 1, 3)})


def test_a_pod_counts_only_once_ray_has_it() -> None:
    backend, _ = backend_with(
        demo(), pod("demo", "demo-head", ip=HEAD_IP),
        pod("demo", "demo-cpu-a", group="cpu", ip=CPU_A),
        pod("demo", "demo-cpu-b", group="cpu", ip=CPU_B),
        joined={HEAD_IP: {"CPU": 0}, CPU_A: {"CPU": 1}},
    )
    status = backend.status("demo")
    assert status.head_ready and not status.is_ready
    cpu = status.group("cpu")
    assert (cpu.ready, cpu.replicas, cpu.min_replicas, cpu.max_replicas) == (1, 2, 1, 3)
    alive = {n.node_id: n.alive for n in status.nodes}
    assert alive == {"demo-head": True, "demo-cpu-a": True, "demo-cpu-b": False}
    assert next(n for n in status.nodes if n.node_id == "demo-cpu-a").resources == {"CPU": 1}


def test_nothing_is_ready_while_the_dashboard_does_not_answer() -> None:
    backend, _ = backend_with(demo(), pod("demo", "demo-head", ip=HEAD_IP),
                              pod("demo", "demo-cpu-a", group="cpu", ip=CPU_A), joined=None)
    status = backend.status("demo")
    assert not status.head_ready and status.group("cpu").ready == 0


def test_a_pod_being_deleted_is_not_running() -> None:
    going = pod("demo", "demo-cpu-a", group="cpu", ip=CPU_A)
    going["metadata"]["deletionTimestamp"] = "2026-12-02T10:05:00Z"
    backend, _ = backend_with(demo(), pod("demo", "demo-head", ip=HEAD_IP), going,
                              joined={HEAD_IP: {}, CPU_A: {}})
    assert backend.status("demo").group("cpu").ready == 0


def test_scale_outside_the_bounds_or_of_no_group_is_refused_before_any_patch() -> None:
    backend, kube = backend_with(demo(), joined={})
    with pytest.raises(ScaleError, match="maxReplicas 3"):
        backend.scale("demo", "cpu", 4)
    with pytest.raises(ScaleError, match="no worker group 'gpu'"):
        backend.scale("demo", "gpu", 1)
    assert kube.patches == []


def test_scale_patch_guards_the_group_and_names_the_newest_pods_under_autoscaling() -> None:
    cluster = raycluster("demo", {"gpu": (0, 0, 2), "cpu": (3, 1, 3)}, autoscaling=True)
    pods = [pod("demo", f"demo-cpu-{i}", group="cpu", created=f"2026-12-02T10:0{i}:00Z")
            for i in range(3)]
    patch = state.scale_patch("demo", cluster, "cpu", 1, pods)
    assert patch[0] == {"op": "test", "path": "/spec/workerGroupSpecs/1/groupName",
                        "value": "cpu"}
    assert patch[1] == {"op": "replace", "path": "/spec/workerGroupSpecs/1/replicas", "value": 1}
    assert patch[2]["value"] == {"workersToDelete": ["demo-cpu-2", "demo-cpu-1"]}
    without = raycluster("demo", {"cpu": (3, 1, 3)}, autoscaling=False)
    assert len(state.scale_patch("demo", without, "cpu", 1, pods)) == 2, "KubeRay removes pods"


def test_scale_applies_the_patch_and_waits_for_ray() -> None:
    backend, kube = backend_with(
        demo(cpu=(1, 1, 3)), pod("demo", "demo-head", ip=HEAD_IP),
        pod("demo", "demo-cpu-a", group="cpu", ip=CPU_A),
        pod("demo", "demo-cpu-b", group="cpu", ip=CPU_B),
        joined={HEAD_IP: {}, CPU_A: {}, CPU_B: {}},
    )
    status = backend.scale("demo", "cpu", 2, timeout=5)
    assert status.group("cpu").ready == 2
    assert kube.patches[0][2][1]["value"] == 2


def test_why_stuck_names_each_pods_problem() -> None:
    failure = {"type": "RayClusterReplicaFailure", "status": "True", "reason": "FailedCreate",
               "message": "exceeded quota"}
    cluster = raycluster("demo", {"cpu": (1, 1, 1), "gpu": (1, 1, 1)},
                         conditions=[{"type": "HeadPodReady", "status": "True"}, failure])
    crashing = pod("demo", "demo-cpu-a", group="cpu", ip=CPU_A, restarts=3)
    pending = pod("demo", "demo-gpu-a", group="gpu", phase="Pending")
    pulling = pod("demo", "demo-gpu-b", group="gpu", phase="Pending", waiting="ImagePullBackOff")
    event = {"kind": "Event", "metadata": {"name": "e1", "namespace": "default"},
             "involvedObject": {"name": "demo-gpu-a"}, "reason": "FailedScheduling",
             "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}
    backend, kube = backend_with(cluster, pod("demo", "demo-head", ip=HEAD_IP), crashing,
                                 pending, pulling, event, joined={HEAD_IP: {}})
    kube.logs["demo-cpu-a"] = "ConnectionError: GCS at demo-head-svc:6379 unreachable\n"
    why = backend._why_stuck("demo", "default")
    assert ("pod demo-cpu-a (group 'cpu') has not joined Ray; container ray-worker restarted 3 "
            "times (last exit code 1); last log line: ConnectionError: GCS at "
            "demo-head-svc:6379 unreachable") in why
    assert "pod demo-gpu-a is Pending: 0/4 nodes are available: 4 Insufficient nvidia.com/gpu." \
        in why
    assert "pod demo-gpu-b: ImagePullBackOff: back-off" in why
    assert why.endswith("FailedCreate: exceeded quota")
    assert "pod demo-head " not in why, "the head joined"


def test_why_stuck_when_the_head_does_not_answer() -> None:
    backend, _ = backend_with(demo(cpu=(1, 1, 1)), pod("demo", "demo-head", ip=HEAD_IP),
                              joined=None)
    assert backend._why_stuck("demo", "default") == (
        "pod demo-head (the head) runs, but the Ray dashboard on the head does not answer")


def test_a_rayjob_for_a_cluster_with_token_auth_is_refused_before_it_is_made() -> None:
    from raykube.errors import JobError
    from raykube.specs.job import RayJobSpec
    from raykube.submission.rayjob import RayJobs

    guarded = raycluster("secure", {"cpu": (1, 1, 1)})
    guarded["spec"]["headGroupSpec"] = {"template": {"spec": {"containers": [{"env": [
        {"name": "RAY_AUTH_TOKEN",
         "valueFrom": {"secretKeyRef": {"name": "secure-ray-token", "key": "auth_token"}}}]}]}}}
    open_one = raycluster("open", {"cpu": (1, 1, 1)})
    open_one["spec"]["headGroupSpec"] = {"template": {"spec": {"containers": [{"env": []}]}}}
    kube = FakeKube()
    kube.add(guarded)
    kube.add(open_one)
    jobs = RayJobs(kube)  # type: ignore[arg-type]

    def job(cluster: str) -> RayJobSpec:
        return RayJobSpec.model_validate({"name": f"to-{cluster}", "entrypoint": "true",
                                          "clusterSelector": {"ray.io/cluster": cluster}})

    with pytest.raises(JobError, match="token auth") as caught:
        jobs.create(job("secure"), None)
    assert "raykube job submit --kube --cluster secure" in caught.value.hint
    assert ("RayJob", "default", "to-secure") not in kube.objects, "nothing was made"
    assert jobs.create(job("open"), None) == "to-open"
