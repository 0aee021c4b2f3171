"""One answer to "which cluster?": :func:`resolve` parses what a user names, once, into a
:class:`Target` that training, job submission, notebooks, serving and the CLI all take.

The forms a reference takes:

- a :class:`~raykube.cluster.Cluster` handle (or a :class:`Target`): as given;
- ``"NAME"``: a cluster of that name on ``backend`` (default: the local backend), in
  ``namespace`` on Kubernetes;
- ``"kuberay:NAMESPACE/NAME"`` or ``"kuberay:NAME"``: a KubeRay RayCluster;
- ``"host:port"``, ``"ray://host:port"`` or ``"auto"``: a bare Ray address, for a driver
  (``train``, ``connect``);
- ``"http(s)://host:port"``: a dashboard URL, for the Jobs API (``submit``): a local cluster's
  own when it is one's, else a bare URL;
- None: inside a Ray job, the cluster it runs on (``RAY_ADDRESS``); elsewhere the one local
  cluster that is running.

Example::

    target = resolve("kuberay:team-a/gpu")
    target.driver_address()       # ('ray://127.0.0.1:41234', None): through a port-forward
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import yaml

from raykube.auth import TOKEN_PATH_ENV
from raykube.cluster import Cluster, get, list_clusters
from raykube.errors import ClusterError, RaykubeError
from raykube.specs.cluster import SPEC_ENV, ClusterSpec, parse_spec

KUBERAY_PREFIX = "kuberay:"
"""``kuberay:NAMESPACE/NAME`` names a RayCluster wherever a cluster is asked for."""

@dataclass(frozen=True)
class Target:
    """A cluster a workload runs against: one raykube knows (``cluster``), or a bare Ray
    ``address`` or ``dashboard_url`` the user gave.

    Attributes:
        reference: what the user named, for messages.
        cluster: the handle of a cluster raykube knows, else None.
        address: a bare driver address (``host:port``, ``ray://...``), else None.
        dashboard_url: a bare dashboard URL (``http://...``), else None.
        token_path: the Ray token file for a bare address or URL: only one the user named
            (``RAY_AUTH_TOKEN_PATH``), never a default file sent to an unknown host.
    """

    reference: str
    cluster: Cluster | None = None
    address: str | None = None
    dashboard_url: str | None = None
    token_path: str | None = None

    @property
    def spec(self) -> ClusterSpec | None:
        """The cluster's spec: a known cluster's, or (inside a raykube cluster's job) the one its
        nodes carry in ``RAYKUBE_SPEC``; None when unknown."""
        if self.cluster is not None:
            return self.cluster.spec
        text = os.environ.get(SPEC_ENV)
        return parse_spec(yaml.safe_load(text), source=SPEC_ENV) if text else None

    def driver_address(self) -> tuple[str, str | None]:
        """``(address for ray.init, token path)``.

        Raises:
            RaykubeError: the target is a dashboard URL, which a driver cannot attach to.
        """
        if self.cluster is not None:
            endpoints = self.cluster.endpoints
            return endpoints.driver_address, endpoints.auth_token_path
        if self.address is None:
            raise RaykubeError(
                f"{self.reference} is a dashboard URL; a Ray driver attaches to a Ray address",
                "pass the cluster's name, or its host:port / ray:// address",
            )
        return self.address, self.token_path

    def dashboard(self) -> tuple[str, str | None]:
        """``(dashboard URL, token path)``: the Jobs API, Serve's REST API, the State API.

        Raises:
            RaykubeError: the target is a bare Ray address, which has no dashboard URL.
        """
        if self.cluster is not None:
            endpoints = self.cluster.endpoints
            return endpoints.dashboard_url, endpoints.auth_token_path
        if self.dashboard_url is None:
            raise RaykubeError(
                f"{self.reference} is a Ray address; this needs the cluster's dashboard",
                "pass the cluster's name, or its dashboard URL http://HOST:8265",
            )
        return self.dashboard_url, self.token_path

    def known(self, what: str) -> Cluster:
        """The cluster, for work that needs one raykube knows (``what``, for the message).

        Raises:
            ClusterError: the target is a bare address.
        """
        if self.cluster is None:
            raise ClusterError(f"{what} needs a cluster raykube knows, not {self.reference}",
                               "pass the cluster's name (`raykube list` shows them)")
        return self.cluster


ClusterRef = Cluster | Target | str | None
"""What every workload's ``cluster=`` takes (see :func:`resolve`)."""


def _dashboard_target(url: str) -> Target:
    """A dashboard URL as a target. The cluster's token goes only where the user sent it:
    with the token file the user named for it (Ray's ``RAY_AUTH_TOKEN_PATH``), or to a local
    cluster raykube runs at that URL (with that cluster's token). Any other URL gets no token:
    a URL is not proof of which cluster answers it."""
    named = os.environ.get(TOKEN_PATH_ENV)
    if named:
        return Target(url, dashboard_url=url, token_path=named)
    for summary in list_clusters():
        if summary.state == "running" and summary.dashboard_url and (
                summary.dashboard_url.rstrip("/") == url.rstrip("/")):
            return Target(url, cluster=get(summary.name))
    return Target(url, dashboard_url=url)


def _inside_job(address: str) -> Target:
    """The cluster a Ray job runs on: the local cluster with that GCS address, if raykube
    started it here, else the bare address."""
    for summary in list_clusters():
        if summary.state == "running":
            cluster = get(summary.name)
            if cluster.endpoints.gcs_address == address:
                return Target(summary.name, cluster=cluster)
    return Target("RAY_ADDRESS", address=address, token_path=os.environ.get(TOKEN_PATH_ENV))


def resolve(reference: ClusterRef, *, backend: str = "local",
            namespace: str | None = None) -> Target:
    """The :class:`Target` ``reference`` names (see the module docstring for the forms).

    Args:
        reference: a handle, a name, a ``kuberay:`` name, an address or URL, or None.
        backend, namespace: where a plain name lives (the CLI's ``--kube`` and ``-n``).

    Raises:
        ClusterNotFound: no cluster of that name runs.
        ClusterError: None was given outside a Ray job and zero or several local clusters run.
        RaykubeError: ``--kube`` without a cluster name.
    """
    if isinstance(reference, Target):
        return reference
    if isinstance(reference, Cluster):
        return Target(reference.name, cluster=reference)
    if reference is None:
        if backend != "local":
            raise RaykubeError("which RayCluster? --kube needs --cluster NAME",
                               "`raykube list --kube` shows the RayClusters raykube manages")
        if os.environ.get("RAY_ADDRESS"):
            return _inside_job(os.environ["RAY_ADDRESS"])
        running = [s.name for s in list_clusters() if s.state == "running"]
        if len(running) != 1:
            raise ClusterError(
                f"which cluster? {len(running)} are running ({', '.join(running) or 'none'})",
                "pass --cluster NAME (or cluster= in Python)",
            )
        return Target(running[0], cluster=get(running[0]))
    if reference.startswith(KUBERAY_PREFIX):
        where, _, name = reference.removeprefix(KUBERAY_PREFIX).rpartition("/")
        return Target(reference, cluster=get(name, backend="kuberay",
                                             namespace=where or namespace))
    if reference.startswith(("http://", "https://")):
        return _dashboard_target(reference)
    if ":" in reference or reference == "auto":
        return Target(reference, address=reference, token_path=os.environ.get(TOKEN_PATH_ENV))
    return Target(reference, cluster=get(reference, backend=backend, namespace=namespace))


__all__ = ["KUBERAY_PREFIX", "ClusterRef", "Target", "resolve"]
