"""The one interface every backend implements, and what it tells workloads.

Each backend turns a :class:`~raykube.specs.cluster.ClusterSpec` into a running cluster and
back: ``up``, ``status``, ``scale``, ``wait``, ``down``, ``endpoints``, ``list``, ``spec_of``.
Workloads (training, jobs, serving) never ask which backend runs a cluster: what differs between
backends reaches them as data, :class:`Endpoints` (how this process reaches the cluster) and
:class:`Capabilities` (what the cluster can do), in the manner of SkyPilot's per-cloud features.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from raykube.specs.cluster import ClusterSpec


@dataclass(frozen=True)
class Capabilities:
    """What a backend's clusters can do, for workloads that need to know.

    Attributes:
        shares_driver_filesystem: a path on this machine is the same path on every node (so a
            checkpoint folder can be checked here before a deploy).
        runs_host_python_envs: nodes can run an interpreter of this machine (MXNet's own
            environment as a ``py_executable``); elsewhere the image must provide it.
        single_node_ip: every node has the same IP (simulated nodes on one machine).
        serve_proxy_location: where Serve's HTTP proxies run (Serve's ``proxy_location``):
            ``HeadOnly`` where nodes share an IP (see
            :data:`~raykube.render.serve_config.HA_PROXY_LOCATION` for why, and for clusters
            that survive head loss), else ``EveryNode``.
        serve_host: the address Serve's HTTP proxies listen on: loopback where the whole
            cluster is this machine's, every interface where other machines (an ingress, a
            Service) must reach them.
        direct_ports: this machine reaches the head's ports as they are, so its addresses
            outlive the process that asked for them; else they are a port-forward that lives
            only as long as that process.
        service_clusters: a service can be given a cluster of its own that lives with it
            (KubeRay's RayService).
    """

    shares_driver_filesystem: bool
    runs_host_python_envs: bool
    single_node_ip: bool
    serve_proxy_location: str
    serve_host: str
    direct_ports: bool
    service_clusters: bool


class DriverKind(StrEnum):
    """How a Ray driver in this process attaches to a cluster."""

    GCS = "gcs"
    """``ray.init("host:port")``: a direct driver on the cluster's network."""
    RAY_CLIENT = "ray_client"
    """``ray.init("ray://host:port")``: through the head's Ray Client server (a port-forward)."""


CLIENT_ROLES = ("gcs", "dashboard", "client", "serve")
"""The head's ports that clients use, by role."""


@dataclass(frozen=True)
class Endpoints:
    """How this process reaches a running cluster.

    Attributes:
        gcs_address: ``host:port`` of the GCS as this process reaches it.
        dashboard_url: ``http://host:port`` of the dashboard: the Jobs API, Serve REST API and
            State API (what ``ray job submit --address`` and ``RAY_API_SERVER_ADDRESS`` want).
        client_address: ``ray://host:port`` of the Ray Client server.
        serve_url: ``http://host:port`` of Serve's HTTP proxy.
        auth_token_path: the token file clients must send, or None when auth is off.
        driver: how a driver attaches: to the GCS directly, or through the Ray Client.
        serve_head_port: the port Serve's ``http_options`` name where it is not
            ``serve_url``'s: on a local cluster that survives head loss only the workers'
            proxies listen at ``serve_url`` (Serve's ``RAY_SERVE_WORKER_PROXY_HTTP_PORT``) and
            the head's proxy here, so no request is in the head's hands when it is lost (a
            replica answering a request that came through a lost proxy waits for the GCS).
    """

    gcs_address: str
    dashboard_url: str
    client_address: str
    serve_url: str
    auth_token_path: str | None = None
    driver: DriverKind = DriverKind.GCS
    serve_head_port: int | None = None

    @property
    def driver_address(self) -> str:
        """What ``ray.init(address=...)`` takes here: ``host:port``, or ``ray://host:port``."""
        return self.client_address if self.driver is DriverKind.RAY_CLIENT else self.gcs_address

    @classmethod
    def at(cls, host: str, ports: Mapping[str, int], *, gcs_host: str | None = None,
           auth_token_path: str | None = None, driver: DriverKind = DriverKind.GCS
           ) -> Endpoints:
        """Endpoints on ``host`` (the GCS on ``gcs_host`` when it differs), from the ports by
        role (:data:`CLIENT_ROLES`)."""
        return cls(
            gcs_address=f"{gcs_host or host}:{ports['gcs']}",
            dashboard_url=f"http://{host}:{ports['dashboard']}",
            client_address=f"ray://{host}:{ports['client']}",
            serve_url=f"http://{host}:{ports['serve']}",
            auth_token_path=auth_token_path,
            driver=driver,
        )


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
    namespace: str | None = None
    """Kubernetes: the RayCluster's namespace."""


@dataclass(frozen=True)
class ScrapeTargets:
    """Where Prometheus finds a running cluster's metrics from this machine."""

    discovery_file: str
    """Ray's service-discovery file (``file_sd`` format): every node's metrics agent and the
    head's autoscaler and dashboard metrics, kept current by the head as nodes come and go."""
    ray_dashboards: str
    """The folder of Grafana dashboards Ray generated for this Ray version."""


LOG_NODES = ("all", "head", "worker")
"""Which nodes' logs :meth:`Backend.logs` copies."""


def node_matches(node_name: str, wanted: str) -> bool:
    """Whether the logs of node ``node_name`` (``head``, or ``worker-<node or pod>``) are
    among those ``wanted`` (one of :data:`LOG_NODES`)."""
    return wanted == "all" or node_name.split("-", 1)[0] == wanted


class Backend(Protocol):
    """What the local and the KubeRay backend both do."""

    name: str
    capabilities: Capabilities

    def up(self, spec: ClusterSpec, *, timeout: float) -> Endpoints:
        """Start (or update) the cluster and return once every group is ready."""

    def dry_run(self, spec: ClusterSpec) -> list[str]:
        """Have the platform check everything :meth:`up` would make, making nothing; returns
        what was checked. (Kubernetes: a server-side dry run.)"""

    def status(self, name: str) -> ClusterStatus:
        """The cluster's groups, nodes and health."""

    def scale(self, name: str, group: str, replicas: int, *, timeout: float) -> ClusterStatus:
        """Set a group's replica count (within its bounds) and wait for it."""

    def wait(self, name: str, *, timeout: float) -> ClusterStatus:
        """Wait until every group has its replicas."""

    def down(self, name: str, *, timeout: float, purge: bool = False) -> None:
        """Stop everything the cluster runs; return when it is gone. Its logs are kept for
        :meth:`logs` unless ``purge``."""

    def logs(self, name: str, out_dir: Path, *, node: str = "all") -> dict[str, Path]:
        """Copy the cluster's logs into ``out_dir``: a running cluster's, else those kept when
        it went down. ``node``: ``head``, ``worker`` or ``all``. Returns where each node's
        logs went, by node.

        Raises:
            ClusterNotFound: the cluster neither runs nor left logs.
        """

    def endpoints(self, name: str) -> Endpoints:
        """How to reach a running cluster."""

    def scrape_targets(self, name: str) -> ScrapeTargets:
        """Where a Prometheus on this machine scrapes the cluster (local clusters; on
        Kubernetes, Prometheus finds the pods through monitors instead)."""

    def list(self, *, all_namespaces: bool = False) -> list[ClusterSummary]:
        """The clusters this backend knows (``all_namespaces``: Kubernetes only)."""

    def spec_of(self, name: str) -> ClusterSpec | None:
        """The spec running cluster ``name`` was started from (None: not made by raykube)."""
