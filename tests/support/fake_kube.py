"""A stand-in for :class:`raykube.backends.kuberay.client.KubeClient`, for unit tests of the
KubeRay backend's logic: objects are the API's own JSON dicts held in memory, and every write
is recorded. The real client is tested against the real control plane (tests/test_kuberay.py).
"""

from __future__ import annotations

import copy
from typing import Any

from raykube.errors import ClusterNotFound


class FakeKube:
    """Holds objects by (kind, namespace, name); lists pods by ``ray.io/cluster`` label."""

    host = "https://fake-api:6443"

    def __init__(self, namespace: str = "default") -> None:
        self.namespace = namespace
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.logs: dict[str, str] = {}
        self.patches: list[tuple[str, str, list[dict[str, Any]]]] = []
        self.applied: list[dict[str, Any]] = []

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta.get("namespace", self.namespace), meta["name"])] = obj
        return obj

    def get(self, kind: str, name: str, namespace: str | None = None, *,
            missing_ok: bool = False) -> dict[str, Any]:
        key = (kind, namespace or self.namespace, name)
        if key not in self.objects:
            if missing_ok:
                return {}
            raise ClusterNotFound(f"{kind} {key[1]}/{name} does not exist")
        return copy.deepcopy(self.objects[key])

    def list(self, kind: str, namespace: str | None = None, *, labels: str | None = None,
             fields: str | None = None, limit: int | None = None,
             all_namespaces: bool = False) -> list[dict[str, Any]]:
        wanted = dict(part.split("=", 1) for part in labels.split(",")) if labels else {}
        field_name = fields.split("=", 1)[1] if fields else None
        found = []
        for (k, ns, _), obj in self.objects.items():
            if k != kind or (not all_namespaces and ns != (namespace or self.namespace)):
                continue
            obj_labels = obj["metadata"].get("labels") or {}
            if any(obj_labels.get(key) != value for key, value in wanted.items()):
                continue
            if field_name and obj.get("involvedObject", {}).get("name") != field_name:
                continue
            found.append(copy.deepcopy(obj))
        return found

    def json_patch(self, kind: str, name: str, patch: list[dict[str, Any]],
                   namespace: str | None = None) -> None:
        self.patches.append((kind, name, patch))

    def apply(self, body: dict[str, Any], *, dry_run: bool = False) -> None:
        self.applied.append(body)
        if not dry_run:
            self.add(copy.deepcopy(body))

    def create(self, body: dict[str, Any], *, dry_run: bool = False) -> None:
        if not dry_run:
            self.add(copy.deepcopy(body))

    def delete(self, kind: str, name: str, namespace: str | None = None, **_: Any) -> None:
        self.objects.pop((kind, namespace or self.namespace, name), None)

    def has_api(self, kind: str) -> bool:
        return True

    def log(self, pod: str, namespace: str | None = None, **_: Any) -> str:
        return self.logs.get(pod, "")


def raycluster(name: str, groups: dict[str, tuple[int, int, int]], *,
               autoscaling: bool = False, conditions: list[dict[str, str]] | None = None
               ) -> dict[str, Any]:
    """A RayCluster as the API returns it; ``groups``: name -> (replicas, min, max)."""
    return {
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "enableInTreeAutoscaling": autoscaling,
            "workerGroupSpecs": [
                {"groupName": g, "replicas": r, "minReplicas": lo, "maxReplicas": hi}
                for g, (r, lo, hi) in groups.items()
            ],
        },
        "status": {"state": "ready", "conditions": conditions or [
            {"type": "HeadPodReady", "status": "True"}]},
    }


def pod(cluster: str, name: str, *, group: str | None = None, phase: str = "Running",
        ip: str | None = None, created: str = "2026-12-02T10:00:00Z", restarts: int = 0,
        waiting: str | None = None) -> dict[str, Any]:
    """A pod of ``cluster``: the head when ``group`` is None, else a worker of ``group``."""
    labels = {"ray.io/cluster": cluster,
              "ray.io/node-type": "head" if group is None else "worker"}
    if group is not None:
        labels["ray.io/group"] = group
    container: dict[str, Any] = {"name": "ray-head" if group is None else "ray-worker",
                                 "restartCount": restarts}
    if restarts:
        container["lastState"] = {"terminated": {"exitCode": 1}}
    if waiting:
        container["state"] = {"waiting": {"reason": waiting, "message": "back-off"}}
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels,
                     "creationTimestamp": created},
        "spec": {"containers": [{"name": container["name"]}]},
        "status": {"phase": phase, "podIP": ip, "containerStatuses": [container]},
    }
