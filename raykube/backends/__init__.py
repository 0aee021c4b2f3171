"""Backends: where a cluster runs, behind one interface (:mod:`raykube.backends.base`).

``local`` runs a real multi-node Ray cluster on this machine; ``kuberay`` runs it as a KubeRay
RayCluster on Kubernetes. Only the backends know which one they are: workloads read a
cluster's :class:`~raykube.backends.base.Endpoints` and
:class:`~raykube.backends.base.Capabilities`.
"""

from __future__ import annotations

from raykube.backends.base import Backend
from raykube.backends.kuberay.backend import KubeRayBackend
from raykube.backends.local import LocalBackend
from raykube.errors import RaykubeError

BACKENDS = ("local", "kuberay")
"""The backends' names, as ``--backend`` takes them."""


def get_backend(name: str = "local", *, namespace: str | None = None) -> Backend:
    """The backend called ``name`` ('local' or 'kuberay'; ``namespace`` for Kubernetes).

    Raises:
        RaykubeError: an unknown backend name.
    """
    if name == "local":
        return LocalBackend()
    if name == "kuberay":
        return KubeRayBackend(namespace=namespace)
    raise RaykubeError(f"unknown backend {name!r}", f"use one of: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "get_backend"]
