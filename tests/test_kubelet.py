"""The pod runner's kubelet rules (tests/support/kubelet.py): environment, command, volumes.

The runner is the Kubernetes tests' stand-in for a kubelet, so its rules are checked against
what Kubernetes documents, with a fake :class:`Lookup` in place of the API server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support.kubelet import (
    KubeletError,
    container_argv,
    container_env,
    container_mounts,
    expand,
    prepare_volume,
)

pytestmark = pytest.mark.unit

POD: dict[str, Any] = {
    "metadata": {"name": "demo-head-x", "namespace": "ml", "uid": "u-1",
                 "labels": {"ray.io/cluster": "demo"}, "annotations": {}},
    "spec": {"nodeName": "gpu-node-0", "serviceAccountName": "demo"},
    "status": {"podIP": "10.244.0.7", "hostIP": "10.0.0.1", "podIPs": [{"ip": "10.244.0.7"}]},
}


class FakeLookup:
    """ConfigMaps and Secrets from dicts; tokens and claims recorded."""

    def __init__(self) -> None:
        self.maps = {("ml", "settings"): {"MODE": "fast", "ca.crt": "CERT"}}
        self.secrets = {("ml", "redis"): {"password": "s3cret"}}
        self.tokens: list[tuple[str | None, int]] = []

    def config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.maps.get((namespace, name))

    def secret(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.secrets.get((namespace, name))

    def token(self, pod: dict[str, Any], audience: str | None, seconds: int) -> str:
        self.tokens.append((audience, seconds))
        return "TOKEN"

    def claim_path(self, namespace: str, claim: str) -> str:
        return f"/srv/{namespace}/{claim}"


def test_dollar_expansion_follows_kubernetes() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", env) == "1-two"
    assert expand("$(MISSING) stays", env) == "$(MISSING) stays"
    assert expand("$$(A) is escaped", env) == "$(A) is escaped"
    assert expand("cost: $$5", env) == "cost: $5"


def test_environment_in_order_with_every_kind_of_reference() -> None:
    container = {
        "name": "ray-head",
        "resources": {"limits": {"cpu": "1500m", "memory": "2Gi"}},
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [
            {"name": "CLUSTER", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.labels['ray.io/cluster']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "ADDRESS", "value": "$(IP):6379"},
            {"name": "CPUS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {
                "resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "GPUS", "valueFrom": {"resourceFieldRef": {
                "resource": "limits.nvidia.com/gpu"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "redis",
                                                                "key": "password"}}},
            {"name": "OPTIONAL", "valueFrom": {"configMapKeyRef": {
                "name": "absent", "key": "x", "optional": True}}},
        ],
        "command": ["bash", "-c"], "args": ["ray start --address=$(ADDRESS) --num-cpus=$(CPUS)"],
    }
    env = container_env(POD, container, FakeLookup(), {"PATH": "/venv/bin"},
                        {"cpu": "48", "nvidia.com/gpu": "8"})
    assert env["CFG_MODE"] == "fast" and env["CLUSTER"] == "demo"
    assert env["ADDRESS"] == "10.244.0.7:6379"
    assert env["CPUS"] == "2", "1500m rounds up"
    assert env["MEM_MI"] == "2048"
    assert env["GPUS"] == "8", "no limit: the node's allocatable"
    assert env["PASSWORD"] == "s3cret" and "OPTIONAL" not in env
    assert container_argv(container, env) == [
        "bash", "-c", "ray start --address=10.244.0.7:6379 --num-cpus=2"]


def test_a_missing_reference_stops_the_container() -> None:
    container = {"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {
        "name": "absent", "key": "k"}}}]}
    with pytest.raises(KubeletError, match="secret ml/absent not found"):
        container_env(POD, container, FakeLookup(), {}, {})


def test_volumes_are_materialised_and_mounted(tmp_path: Path) -> None:
    lookup = FakeLookup()
    volumes = {
        "token": {"name": "token", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"configMap": {"name": "settings", "items": [{"key": "ca.crt",
                                                          "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                                        "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
        ]}},
        "shm": {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
        "logs": {"name": "logs", "emptyDir": {}},
        "ckpt": {"name": "ckpt", "persistentVolumeClaim": {"claimName": "demo-storage"}},
    }
    prepared = {name: prepare_volume(POD, v, tmp_path, lookup) for name, v in volumes.items()}
    token_dir = Path(str(prepared["token"].source))
    assert (token_dir / "token").read_text() == "TOKEN"
    assert (token_dir / "ca.crt").read_text() == "CERT"
    assert (token_dir / "namespace").read_text() == "ml"
    assert prepared["shm"].source is None and prepared["shm"].tmpfs_size == str(2**30)
    assert prepared["ckpt"].source == "/srv/ml/demo-storage"
    mounts = container_mounts({"volumeMounts": [
        {"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
         "readOnly": True},
        {"name": "logs", "mountPath": "/tmp/ray"},
        {"name": "ckpt", "mountPath": "/mnt/checkpoints", "subPath": "runs"},
    ]}, prepared)
    assert [(m.target, m.read_only) for m in mounts] == [
        ("/var/run/secrets/kubernetes.io/serviceaccount", True), ("/tmp/ray", False),
        ("/mnt/checkpoints", False)]
    assert mounts[2].source == "/srv/ml/demo-storage/runs"
