"""What every object raykube renders shares: its metadata, and the head's well-known ports."""

from __future__ import annotations

from typing import Any

MANAGED_BY = {"app.kubernetes.io/managed-by": "raykube"}
"""The label on every object raykube makes."""

HEAD_PORTS = {"gcs": 6379, "dashboard": 8265, "client": 10001, "serve": 8000, "metrics": 8080}
"""The head pod's ports by role: KubeRay's defaults, which its head service exposes. The roles
``gcs``, ``dashboard``, ``client`` and ``serve`` are what clients reach (see Endpoints)."""

PORT_NAMES = {"gcs": "gcs-server"}
"""KubeRay's container port name where it differs from the role."""

HEAD_METRICS_PORTS = {"metrics": HEAD_PORTS["metrics"], "as-metrics": 44217, "dash-metrics": 44227}
"""The head's metrics ports by KubeRay's names: the node's metrics agent, the autoscaler's and
the dashboard's (Ray's defaults), which a PodMonitor scrapes."""


def metadata(name: str, namespace: str | None) -> dict[str, Any]:
    """``metadata`` of every object raykube renders: name, managed-by label, and the namespace
    only where the spec names one (as KubeRay's samples do), so ``kubectl apply -n`` works."""
    meta: dict[str, Any] = {"name": name, "labels": dict(MANAGED_BY)}
    if namespace:
        meta["namespace"] = namespace
    return meta
