"""The one interface every backend implements, and the status it reports.

Workloads (training, jobs, serving) talk to a cluster through :class:`Endpoints` alone, so they
never ask which backend runs it. Each backend turns a :class:`~raykube.spec.ClusterSpec` into a
running cluster and back: ``up``, ``status``, ``scale``, ``wait``, ``down``, ``endpoints``,
``list``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from raykube.spec import ClusterSpec


@dataclass(frozen=True)
class Endpoints:
    """How clients reach a running cluster.

    Attributes:
        gcs_address: ``host:port`` for ``ray.init(address=...)`` from inside the cluster network.
        dashboard_url: ``http://host:port`` of the dashboard: the Jobs API, Serve REST API and
            State API (what ``ray job submit --address`` and ``RAY_API_SERVER_ADDRESS`` want).
        client_address: ``ray://host:port`` of the Ray Client server.
        serve_url: ``http://host:port`` of Serve's HTTP proxy on the head.
        auth_token_path: the token file clients must send, or None when auth is off.
    """

    gcs_address: str
    dashboard_url: str
    client_address: str
    serve_url: str
    auth_token_path: str | None = None


@dataclass(frozen=True)
class NodeStatus:
    """One Ray node (one pod on Kubernetes, one raylet locally)."""

    node_id: str
    group: str
    alive: bool
    resources: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupStatus:
    """One worker group: what is asked for and what has joined Ray."""

    name: str
    replicas: int
    min_replicas: int
    max_replicas: int
    ready: int

    @property
    def is_ready(self) -> bool:
        """Whether every asked-for replica has joined Ray."""
        return self.ready >= self.replicas


@dataclass(frozen=True)
class ClusterStatus:
    """A cluster as its backend sees it now."""

    name: str
    backend: str
    head_ready: bool
    groups: list[GroupStatus]
    nodes: list[NodeStatus]
    endpoints: Endpoints | None
    message: str = ""

    @property
    def is_ready(self) -> bool:
        """Head up and every group at its asked-for replica count."""
        return self.head_ready and all(g.is_ready for g in self.groups)

    def group(self, name: str) -> GroupStatus:
        """The status of worker group ``name``."""
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(name)


@dataclass(frozen=True)
class ClusterSummary:
    """A line of ``raykube list``."""

    name: str
    backend: str
    state: str
    dashboard_url: str | None


class Backend(Protocol):
    """What the local and the KubeRay backend both do."""

    name: str

    def up(self, spec: ClusterSpec, *, timeout: float) -> Endpoints:
        """Start (or update) the cluster and return once every group is ready."""

    def status(self, name: str) -> ClusterStatus:
        """The cluster's groups, nodes and health."""

    def scale(self, name: str, group: str, replicas: int, *, timeout: float) -> ClusterStatus:
        """Set a group's replica count (within its bounds) and wait for it."""

    def wait(self, name: str, *, timeout: float) -> ClusterStatus:
        """Wait until every group has its replicas."""

    def down(self, name: str, *, timeout: float) -> None:
        """Stop everything the cluster runs; return when it is gone."""

    def endpoints(self, name: str) -> Endpoints:
        """How to reach a running cluster."""

    def list(self) -> list[ClusterSummary]:
        """The clusters this backend knows."""

    def spec_of(self, name: str) -> ClusterSpec:
        """The spec running cluster ``name`` was started from."""
