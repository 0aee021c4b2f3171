"""Cluster spec -> Kubernetes manifests for KubeRay (pure functions, no API calls).

The same spec the local backend runs becomes a ``ray.io/v1`` RayCluster: the head group and one
worker group per spec group, with CPU/memory requests and limits, ``nvidia.com/gpu`` limits,
the GPU taint's toleration and node selectors for GPU groups, Ray node labels and resources
that mark each group (``raykube.io/group`` and ``group:<name>``, as locally), autoscaling
options, and the checkpoint storage as a ReadWriteMany PVC mounted at the same path in every
pod. Supporting objects: that PVC and a PodMonitor for Prometheus. ``raykube manifest SPEC``
prints them for ``kubectl apply``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from raykube.render.meta import HEAD_METRICS_PORTS, HEAD_PORTS, MANAGED_BY, PORT_NAMES, metadata
from raykube.render.monitoring import render_monitoring
from raykube.render.serve_config import SERVE_FAST_PATH_ENV
from raykube.specs.cluster import (
    GPU_RESOURCE,
    SPEC_ENV,
    ClusterSpec,
    EnvValue,
    HeadGroupSpec,
    WorkerGroupSpec,
)
from raykube.specs.start_params import parse_resources_param

STORAGE_VOLUME = "raykube-storage"
STORAGE_PATH = "/mnt/raykube-storage"
"""Where the checkpoint claim is mounted when the spec's storage names no path."""

def format_resources_param(resources: dict[str, float]) -> str:
    """A ``resources`` rayStartParam that survives the shell: KubeRay pastes rayStartParams
    into the container's ``bash -c`` line unquoted, so a space in the JSON would split it."""
    compact = json.dumps({k: (int(v) if float(v).is_integer() else v)
                          for k, v in resources.items()}, sort_keys=True, separators=(",", ":"))
    return f"'{compact}'"





def claim_name(spec: ClusterSpec) -> str | None:
    """The PVC holding checkpoints, or None when the spec has no storage."""
    if spec.storage is None:
        return None
    return spec.storage.claim_name or f"{spec.name}-storage"


def _resources(cpu: Any, memory: Any, gpu: int = 0) -> dict[str, dict[str, str]]:
    amounts = {"cpu": str(cpu), "memory": str(memory)}
    limits = dict(amounts)
    if gpu:
        limits[GPU_RESOURCE] = str(gpu)
    return {"requests": amounts, "limits": limits}


def _env(values: dict[str, EnvValue]) -> list[dict[str, Any]]:
    """Kubernetes' env list: literals as ``value``, Secret and ConfigMap keys as ``valueFrom``."""
    rendered: list[dict[str, Any]] = []
    for name, value in sorted(values.items()):
        if isinstance(value, str):
            rendered.append({"name": name, "value": value})
        else:
            rendered.append({"name": name, "valueFrom": value.model_dump(by_alias=True,
                                                                         exclude_none=True)})
    return rendered


def _container_env(spec: ClusterSpec, group: HeadGroupSpec | WorkerGroupSpec
                   ) -> dict[str, Any]:
    """A container's ``env`` (Serve's fast path, the group's, and the spec without its
    environment as ``RAYKUBE_SPEC``) and ``envFrom``."""
    fields: dict[str, Any] = {"env": _env({**SERVE_FAST_PATH_ENV, **group.env,
                                           SPEC_ENV: spec.public().to_yaml()})}
    if group.env_from:
        fields["envFrom"] = [{k: {"name": v} for k, v in item.model_dump(
            by_alias=True, exclude_none=True).items()} for item in group.env_from]
    return fields


def _storage_mounts(spec: ClusterSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    claim = claim_name(spec)
    if claim is None or spec.storage is None:
        return [], []
    return (
        [{"name": STORAGE_VOLUME, "mountPath": spec.storage.path}],
        [{"name": STORAGE_VOLUME, "persistentVolumeClaim": {"claimName": claim}}],
    )


CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
"""What every Ray container runs with: no new privileges, no Linux capabilities (Ray needs
none; the root filesystem stays writable, as Ray writes below its home)."""

POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
"""Every Ray pod: not as root (Ray's images run as the user ``ray``), the runtime's default
seccomp profile. Kubernetes' "restricted" Pod Security Standard, less a read-only root."""


def _pod(spec: ClusterSpec, container: dict[str, Any], *, api_token: bool) -> dict[str, Any]:
    """A pod spec running ``container`` with the restrictive security settings, the checkpoint
    storage mounted when there is one, and a Kubernetes API token only when ``api_token`` (the
    head with Ray's autoscaler, which scales the RayCluster through the API)."""
    mounts, volumes = _storage_mounts(spec)
    if mounts:
        container["volumeMounts"] = mounts
    container["securityContext"] = copy.deepcopy(CONTAINER_SECURITY)
    pod: dict[str, Any] = {
        "automountServiceAccountToken": api_token,
        "securityContext": copy.deepcopy(POD_SECURITY),
        "containers": [container],
    }
    if volumes:
        pod["volumes"] = volumes
    return pod


def _head_group(spec: ClusterSpec, head: HeadGroupSpec) -> dict[str, Any]:
    params = {"dashboard-host": "0.0.0.0", **head.ray_start_params}
    if "resources" in params:  # one shell word, as the workers' (see format_resources_param)
        params["resources"] = format_resources_param(parse_resources_param(params["resources"]))
    pod = _pod(spec, {
        "name": "ray-head",
        "image": head.image or spec.resolved_image,
        "resources": _resources(head.cpu, head.memory),
        "ports": [{"name": PORT_NAMES.get(role, role), "containerPort": port}
                  for role, port in {**HEAD_PORTS, **HEAD_METRICS_PORTS}.items()],
        **_container_env(spec, head),
    }, api_token=spec.enable_in_tree_autoscaling)
    return {
        "serviceType": head.service_type,
        "rayStartParams": params,
        "template": {"metadata": {"labels": dict(MANAGED_BY)}, "spec": pod},
    }


def _tolerations(group: WorkerGroupSpec) -> list[dict[str, Any]]:
    tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in group.tolerations]
    if group.gpu and not any(t.get("key") == GPU_RESOURCE for t in tolerations):
        # GPU node pools (GKE, EKS, ...) taint their nodes so only GPU work lands there.
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    return tolerations


def _worker_group(spec: ClusterSpec, group: WorkerGroupSpec) -> dict[str, Any]:
    params = {**group.ray_start_params,
              "resources": format_resources_param(group.placement_resources())}
    pod = _pod(spec, {
        "name": "ray-worker",
        "image": group.image or spec.resolved_image,
        "resources": _resources(group.cpu, group.memory, group.gpu),
        **_container_env(spec, group),
    }, api_token=False)
    tolerations = _tolerations(group)
    if tolerations:
        pod["tolerations"] = tolerations
    if group.node_selector:
        pod["nodeSelector"] = dict(group.node_selector)
    return {
        "groupName": group.group_name,
        "replicas": group.replicas,
        "minReplicas": group.min_replicas,
        "maxReplicas": group.max_replicas,
        "rayStartParams": params,
        "labels": group.ray_labels(),
        "template": {"metadata": {"labels": dict(MANAGED_BY)}, "spec": pod},
    }


def _gcs_fault_tolerance(spec: ClusterSpec) -> dict[str, Any]:
    options = spec.gcs_fault_tolerance_options
    assert options is not None
    rendered: dict[str, Any] = {"redisAddress": options.redis_address}
    if options.redis_password is not None:
        rendered["redisPassword"] = {"valueFrom": {"secretKeyRef": {
            "name": options.redis_password.secret_name, "key": options.redis_password.key}}}
    if options.external_storage_namespace:
        rendered["externalStorageNamespace"] = options.external_storage_namespace
    return rendered


TOKEN_KEY = "auth_token"
"""The key of the token in the cluster's token Secret (KubeRay's name for it)."""


def token_env(secret: str) -> list[dict[str, Any]]:
    """What turns on Ray token auth in a container: ``RAY_AUTH_MODE=token`` and the token
    from ``secret`` (KubeRay before v1.5.1 has no ``authOptions``; this is its manual form)."""
    return [{"name": "RAY_AUTH_MODE", "value": "token"},
            {"name": "RAY_AUTH_TOKEN",
             "valueFrom": {"secretKeyRef": {"name": secret, "key": TOKEN_KEY}}}]


def render_raycluster(spec: ClusterSpec, *, token_auth: bool = True) -> dict[str, Any]:
    """The RayCluster for ``spec``: with Ray token auth in every Ray container and the
    autoscaler when the spec has it (``token_auth=False`` leaves it out: the RayJob and
    RayService clusters of a KubeRay operator that cannot send a token, see the README)."""
    spec = spec.with_storage_path(STORAGE_PATH)
    body: dict[str, Any] = {
        "rayVersion": spec.ray_version,
        "enableInTreeAutoscaling": spec.enable_in_tree_autoscaling,
        "headGroupSpec": _head_group(spec, spec.head_group_spec),
        "workerGroupSpecs": [_worker_group(spec, g) for g in spec.worker_group_specs],
    }
    if spec.enable_in_tree_autoscaling:
        options = spec.autoscaler_options
        body["autoscalerOptions"] = {
            "idleTimeoutSeconds": options.idle_timeout_seconds,
            "upscalingMode": options.upscaling_mode.value,
        }
    if spec.gcs_fault_tolerance_options is not None:
        body["gcsFaultToleranceOptions"] = _gcs_fault_tolerance(spec)
    if token_auth and spec.token_secret:
        auth = token_env(spec.token_secret)
        for group in [body["headGroupSpec"], *body["workerGroupSpecs"]]:
            for container in group["template"]["spec"]["containers"]:
                container["env"] = auth + container["env"]
        if spec.enable_in_tree_autoscaling:  # Ray's autoscaler talks to the GCS too
            body["autoscalerOptions"]["env"] = copy.deepcopy(auth)
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": metadata(spec.name, spec.namespace),
        "spec": body,
    }


def render_storage_claim(spec: ClusterSpec) -> dict[str, Any] | None:
    """The ReadWriteMany PVC for checkpoints (every pod mounts it), or None without storage."""
    claim = claim_name(spec)
    if claim is None or spec.storage is None or spec.storage.claim_name:
        return None  # none asked for, or the user's own existing claim
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": str(spec.storage.size)}},
    }
    if spec.storage.storage_class_name:
        claim_spec["storageClassName"] = spec.storage.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(claim, spec.namespace),
        "spec": claim_spec,
    }


def render_network_policy(spec: ClusterSpec) -> dict[str, Any]:
    """A NetworkPolicy admitting to the cluster's pods only the cluster's own pods (any port:
    Ray's nodes talk on many), Serve's HTTP port from pods of the namespace, and the metrics
    port from anywhere in the cluster (Prometheus). raykube's port-forward goes through the
    API server and the kubelet, which such a policy does not stop."""
    own = {"matchLabels": {"ray.io/cluster": spec.name}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(f"{spec.name}-ray", spec.namespace),
        "spec": {
            "podSelector": own,
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": own}]},
                {"from": [{"podSelector": {}}],
                 "ports": [{"protocol": "TCP", "port": HEAD_PORTS["serve"]}]},
                {"from": [{"namespaceSelector": {}}],
                 "ports": [{"protocol": "TCP", "port": HEAD_PORTS["metrics"]}]},
            ],
        },
    }


def render_all(spec: ClusterSpec) -> list[dict[str, Any]]:
    """Every object ``raykube up --backend kuberay`` creates for ``spec``, in creation order
    (the token Secret aside: it is made where the token stays secret, see KubeRayBackend.up),
    with the monitoring objects its ``monitoring`` asks for."""
    objects = [o for o in (render_storage_claim(spec), render_raycluster(spec)) if o]
    if spec.network_policy:
        objects.append(render_network_policy(spec))
    return objects + render_monitoring(spec)


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """Objects as a multi-document YAML stream for ``kubectl apply -f -``."""
    return yaml.safe_dump_all(objects, sort_keys=False)
