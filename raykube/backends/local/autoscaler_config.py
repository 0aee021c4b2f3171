"""Cluster spec -> the config of Ray's autoscaler with its fake multi-node provider (pure).

Locally, each worker replica is one raylet that Ray's own autoscaler starts through its
``fake_multinode`` provider (as raykube's ``node_provider`` subclass, which gives each node a
folder of its own), one node type per worker group. Ray ships that provider but not the example
config its ``AutoscalingCluster`` helper reads, so raykube writes the whole config.

The autoscaler re-reads this file on every update, which is how raykube scales: a group's
``min_workers``/``max_workers`` are its current target when autoscaling is off, and
``minReplicas``/``maxReplicas`` when the autoscaler owns the count.
"""

from __future__ import annotations

from typing import Any

from raykube.specs.cluster import ClusterSpec, WorkerGroupSpec

NODES_DIR_KEY = "raykube_nodes_dir"
"""The provider-config key naming the folder of the nodes' own temp folders (read by
:mod:`raykube.backends.local.node_provider`)."""

PROVIDER_CLASS = "raykube.backends.local.node_provider.PodFolderNodeProvider"
"""Ray's fake multi-node provider with a folder per node (imported by the autoscaler)."""

HEAD_NODE_TYPE = "ray.head.default"
"""The fake provider's fixed name for the head's node type."""

DEFAULT_OBJECT_STORE_BYTES = 100 * 1024**2
"""Object store per local node unless rayStartParams say otherwise; Ray's default (30% of RAM
per node) would overcommit a laptop several times over with a few simulated nodes."""

LOCAL_START_PARAMS = {"num-cpus", "num-gpus", "memory", "object-store-memory", "resources"}
"""Worker rayStartParams the local backend applies; the rest apply on Kubernetes only."""


def group_resources(group: WorkerGroupSpec) -> dict[str, float]:
    """Ray resources one worker of ``group`` advertises (what the autoscaler plans with): its
    CPUs, GPUs, memory and object store, and the placement resources both backends give the
    group."""
    resources: dict[str, float] = {"CPU": group.ray_cpus, "memory": group.ray_memory}
    if group.gpu:
        resources["GPU"] = group.gpu
    resources["object_store_memory"] = int(
        group.ray_start_params.get("object-store-memory", DEFAULT_OBJECT_STORE_BYTES)
    )
    resources.update(group.placement_resources())
    return resources


def group_bounds(group: WorkerGroupSpec, target: int | None) -> tuple[int, int]:
    """``(min_workers, max_workers)`` for ``group`` given its current target replica count.

    While raykube drives a change (``up``, ``scale``) the target pins both bounds; once the
    autoscaler owns the group (``target`` None) the spec's bounds apply.
    """
    if target is not None:
        return target, target
    return group.replica_bounds


def build_autoscaler_config(
    spec: ClusterSpec,
    *,
    gcs_address: str,
    head_node_id: str,
    head_resources: dict[str, float],
    targets: dict[str, int | None],
    nodes_dir: str,
) -> dict[str, Any]:
    """The full autoscaler config for ``spec``.

    Args:
        spec: the cluster.
        gcs_address: ``host:port`` of the head's GCS, for the nodes the provider starts.
        head_node_id: the head's Ray node id (the autoscaler matches nodes to it by id).
        head_resources: what the head advertises (the provider plans with it).
        targets: per group, a replica count to pin, or None to let the autoscaler choose
            between minReplicas and maxReplicas.
        nodes_dir: the folder holding each worker node's own temp folder.
    """
    node_types: dict[str, Any] = {
        HEAD_NODE_TYPE: {"resources": head_resources, "node_config": {}, "max_workers": 0}
    }
    total_max = 0
    for group in spec.worker_group_specs:
        low, high = group_bounds(group, targets.get(group.group_name))
        total_max += high
        node_types[group.group_name] = {
            "resources": group_resources(group),
            "labels": group.ray_labels(),
            "node_config": {},
            "min_workers": low,
            "max_workers": high,
        }
    options = spec.autoscaler_options
    return {
        "cluster_name": spec.name,
        "max_workers": total_max,
        "upscaling_speed": options.upscaling_mode.upscaling_speed,
        "idle_timeout_minutes": options.idle_timeout_seconds / 60.0,
        "provider": {
            "type": "external",
            "module": PROVIDER_CLASS,
            NODES_DIR_KEY: nodes_dir,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,
            "head_node_id": head_node_id,
        },
        "available_node_types": node_types,
        "head_node_type": HEAD_NODE_TYPE,
        "auth": {},
        "docker": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }


def unsupported_worker_params(group: WorkerGroupSpec) -> list[str]:
    """rayStartParams of ``group`` that only the Kubernetes backend applies."""
    return sorted(set(group.ray_start_params) - LOCAL_START_PARAMS)
