"""Serve spec + cluster spec -> a KubeRay ``ray.io/v1`` RayService and its PodDisruptionBudget.

The RayService's ``serveConfigV2`` is the Serve config :func:`render_serve_config` writes (the
one ``raykube serve deploy`` sends), its ``rayClusterConfig`` the RayCluster spec of the
cluster spec file. KubeRay pods cannot read this machine's folders, so ``workingDir`` must be a
URI they can fetch (or the code must be in the image). A PodDisruptionBudget keeps voluntary
evictions (node drains, upgrades) from leaving fewer serving workers than the service's
fewest replicas.

Pure functions: nothing here touches a cluster.
"""

from __future__ import annotations

from typing import Any

import yaml

from raykube.errors import SpecError
from raykube.render.cluster import render_raycluster
from raykube.render.meta import HEAD_PORTS, metadata
from raykube.render.serve_config import render_serve_config
from raykube.specs.cluster import ClusterSpec, load_spec
from raykube.specs.serve import ServeSpec

SERVICE_LABEL = "raykube.io/service"
"""Pod label naming the service whose RayService created the pod (the PDB's selector)."""


def check_for_kubernetes(spec: ServeSpec) -> ClusterSpec:
    """The cluster spec of a service bound for KubeRay, after checking the pods can get its code.

    Raises:
        SpecError: a local workingDir, no ``cluster:``, or an invalid cluster spec.
    """
    if spec.uses_local_working_dir():
        raise SpecError(
            f"service {spec.name}: workingDir {spec.working_dir} is a local folder, which "
            "KubeRay pods cannot read",
            "give workingDir as a URI the pods can fetch (https://.../code.zip, s3://...), or "
            "put the code in the image and drop workingDir",
        )
    if not spec.cluster:
        raise SpecError(
            f"service {spec.name}: a RayService needs a cluster: set cluster: to a cluster "
            "spec file (relative to the serve spec)",
            "e.g. cluster: ../clusters/local.yaml",
        )
    return load_spec(spec.cluster)


def render_rayservice(spec: ServeSpec, cluster: ClusterSpec,
                      applications: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The RayService running ``spec`` on a cluster built from ``cluster``; ``applications``
    replaces the spec's own Serve applications (a rollout's intermediate steps)."""
    # KubeRay before v1.5.1 deploys Serve through the dashboard without a token: its clusters
    # run without token auth (README "Security").
    cluster_body = render_raycluster(cluster, token_auth=False)["spec"]
    for group in [cluster_body["headGroupSpec"], *cluster_body["workerGroupSpecs"]]:
        group["template"]["metadata"]["labels"][SERVICE_LABEL] = spec.name
    serve_config = render_serve_config(spec, http_port=HEAD_PORTS["serve"],
                                       survives_head_loss=cluster.survives_head_loss)
    if applications is not None:
        serve_config["applications"] = applications
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": metadata(spec.name, cluster.namespace),
        "spec": {
            "upgradeStrategy": {"type": spec.upgrade_strategy},
            "serveConfigV2": yaml.safe_dump(serve_config, sort_keys=False),
            "rayClusterConfig": cluster_body,
        },
    }


def render_disruption_budget(spec: ServeSpec, cluster: ClusterSpec) -> dict[str, Any]:
    """A PodDisruptionBudget keeping as many serving workers as the service's fewest replicas.

    Kubernetes takes only an integer ``minAvailable`` for pods of a controller without a scale
    subresource, and RayCluster has none: with ``maxUnavailable`` the disruption controller
    stops with "rayclusters.ray.io does not implement the scale subresource" (seen on the
    real control plane).
    """
    fewest = spec.replicas if spec.autoscaling is None else spec.autoscaling.min_replicas
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(f"{spec.name}-workers", cluster.namespace),
        "spec": {
            "minAvailable": max(1, fewest or 1),
            "selector": {"matchLabels": {SERVICE_LABEL: spec.name,
                                         "ray.io/node-type": "worker"}},
        },
    }


def render_service_manifests(spec: ServeSpec) -> list[dict[str, Any]]:
    """Everything ``kubectl apply`` needs for ``spec`` on KubeRay.

    Raises:
        SpecError: a local workingDir, no cluster spec, or an invalid cluster spec.
    """
    cluster = check_for_kubernetes(spec)
    return [render_rayservice(spec, cluster), render_disruption_budget(spec, cluster)]
