"""What a RayCluster's objects say, as pure functions of them: its status (groups, Ray nodes,
readiness), a scale request as a JSON patch, and why it is stuck. The backend fetches the
objects through :class:`~raykube.backends.kuberay.client.KubeClient` and hands them here, so
this logic is tested on plain dicts.

"Joined" is the alive Ray nodes' resources by node IP, from the head's dashboard (None while it
does not answer): a pod counts as running only when Ray itself has it.
"""

from __future__ import annotations

from typing import Any

from raykube.backends.base import ClusterStatus, Endpoints, GroupStatus, NodeStatus
from raykube.backends.kuberay.client import condition, condition_true
from raykube.errors import ScaleError
from raykube.specs.cluster import check_scale

CLUSTER_LABEL = "ray.io/cluster"
GROUP_POD_LABEL = "ray.io/group"
NODE_TYPE_LABEL = "ray.io/node-type"

Joined = dict[str, dict[str, float]] | None

STUCK_REASONS = ("ErrImagePull", "ImagePullBackOff", "CrashLoopBackOff", "CreateContainerError")
"""Container waiting reasons that mean a pod will not start by itself."""


def labels(pod: dict[str, Any]) -> dict[str, str]:
    """A pod's labels."""
    return dict(pod["metadata"].get("labels") or {})


def is_head(pod: dict[str, Any]) -> bool:
    """Whether ``pod`` is the cluster's head."""
    return labels(pod).get(NODE_TYPE_LABEL) == "head"


def is_live(pod: dict[str, Any]) -> bool:
    """Running and not being deleted."""
    return (pod.get("status") or {}).get("phase") == "Running" and not pod["metadata"].get(
        "deletionTimestamp")


def pod_ip(pod: dict[str, Any]) -> str | None:
    """The pod's IP, once it has one."""
    return (pod.get("status") or {}).get("podIP")


def joined_ray(pod: dict[str, Any], joined: Joined) -> bool:
    """Running and joined Ray: its pod IP is an alive Ray node's."""
    return is_live(pod) and joined is not None and pod_ip(pod) in joined


def cluster_status(name: str, cluster: dict[str, Any], pods: list[dict[str, Any]],
                   joined: Joined, endpoints: Endpoints) -> ClusterStatus:
    """The status of RayCluster ``cluster`` given its pods and the Ray nodes that joined."""
    head_ready = any(joined_ray(p, joined) for p in pods if is_head(p))
    groups = []
    for group in cluster["spec"].get("workerGroupSpecs", []):
        ready = sum(1 for p in pods if joined_ray(p, joined)
                    and labels(p).get(GROUP_POD_LABEL) == group["groupName"])
        groups.append(GroupStatus(
            name=group["groupName"], replicas=int(group.get("replicas", 0)),
            min_replicas=int(group.get("minReplicas", 0)),
            max_replicas=int(group.get("maxReplicas", 0)), ready=ready,
        ))
    nodes = [
        NodeStatus(
            node_id=p["metadata"]["name"],
            group="head" if is_head(p) else labels(p).get(GROUP_POD_LABEL, "?"),
            alive=joined_ray(p, joined),
            resources=(joined or {}).get(pod_ip(p) or "", {}),
        )
        for p in pods
    ]
    return ClusterStatus(
        name=name, backend="kuberay", head_ready=head_ready, groups=groups, nodes=nodes,
        endpoints=endpoints, message=(cluster.get("status") or {}).get("state", ""),
    )


def summary_state(cluster: dict[str, Any]) -> str:
    """One word for ``raykube list``, from KubeRay's conditions (its ``state`` field is
    deprecated): suspended, failed, ready (provisioned with the head pod ready) or
    provisioning."""
    if condition_true(cluster, "RayClusterSuspended"):
        return "suspended"
    if condition_true(cluster, "RayClusterReplicaFailure"):
        return "failed"
    if condition_true(cluster, "RayClusterProvisioned") and condition_true(cluster,
                                                                           "HeadPodReady"):
        return "ready"
    return "provisioning"


def scale_patch(name: str, cluster: dict[str, Any], group: str, replicas: int,
                pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The JSON patch that sets ``group``'s replicas of RayCluster ``cluster``.

    With the autoscaler on, KubeRay removes only the pods named in
    ``scaleStrategy.workersToDelete``, as Ray's autoscaler names them (lowering replicas alone
    removes nothing): the newest pods of the group are named.

    Raises:
        ScaleError: no such group, or ``replicas`` outside [minReplicas, maxReplicas].
    """
    groups = cluster["spec"].get("workerGroupSpecs", [])
    index = next((i for i, g in enumerate(groups) if g["groupName"] == group), None)
    if index is None:
        known = ", ".join(g["groupName"] for g in groups) or "none"
        raise ScaleError(f"cluster {name!r}: no worker group {group!r} (groups: {known})",
                         "pass one of those groups")
    check_scale(name, group, replicas, (int(groups[index].get("minReplicas", 0)),
                                        int(groups[index]["maxReplicas"])))
    patch: list[dict[str, Any]] = [
        {"op": "test", "path": f"/spec/workerGroupSpecs/{index}/groupName", "value": group},
        {"op": "replace", "path": f"/spec/workerGroupSpecs/{index}/replicas", "value": replicas},
    ]
    running = sorted((p for p in pods if labels(p).get(GROUP_POD_LABEL) == group
                      and not p["metadata"].get("deletionTimestamp")),
                     key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)
    if cluster["spec"].get("enableInTreeAutoscaling") and replicas < len(running):
        victims = [p["metadata"]["name"] for p in running[: len(running) - replicas]]
        patch.append({"op": "add", "path": f"/spec/workerGroupSpecs/{index}/scaleStrategy",
                      "value": {"workersToDelete": victims}})
    return patch


def not_joined(pod: dict[str, Any], *, head_answers: bool, last_log_line: str) -> str:
    """Why a Running pod is not a Ray node: its container's restarts and last log line."""
    role = "the head" if is_head(pod) else f"group {labels(pod).get(GROUP_POD_LABEL, '?')!r}"
    what = "has not joined Ray" if head_answers else (
        "runs, but the Ray dashboard on the head does not answer")
    text = f"pod {pod['metadata']['name']} ({role}) {what}"
    container = pod["spec"]["containers"][0]["name"]
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        last = (status.get("lastState") or {}).get("terminated")
        if status.get("name") == container and status.get("restartCount"):
            text += f"; container {container} restarted {status['restartCount']} times" + (
                f" (last exit code {last.get('exitCode')})" if last else "")
    line = last_log_line.strip()
    return text + (f"; last log line: {line[:300]}" if line else "")


def why_stuck(cluster: dict[str, Any], pods: list[dict[str, Any]], joined: Joined,
              scheduling_failures: dict[str, str], last_log_lines: dict[str, str]) -> str:
    """Why the cluster is not ready, in one line: pods not joined (with restarts and their
    last log line), containers stuck pulling or crashing, pods that cannot be scheduled (the
    scheduler's last message, by pod name), and KubeRay's replica failure condition."""
    reasons: list[str] = []
    for pod in pods:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        if status.get("phase") == "Running" and pod_ip(pod) not in (joined or {}):
            reasons.append(not_joined(pod, head_answers=joined is not None,
                                      last_log_line=last_log_lines.get(name, "")))
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason") in STUCK_REASONS:
                reasons.append(f"pod {name}: {waiting['reason']}: {waiting.get('message') or ''}")
        if status.get("phase") == "Pending":
            reasons.append(f"pod {name} is Pending: "
                           f"{scheduling_failures.get(name) or 'waiting'}")
    failure = condition(cluster, "RayClusterReplicaFailure")
    if condition_true(cluster, "RayClusterReplicaFailure") and failure:
        reasons.append(f"{failure.get('reason')}: {failure.get('message')}")
    return "; ".join(reasons) or "no pod reports a problem yet"
