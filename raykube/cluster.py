"""The Python API for clusters: :func:`up` starts one, :func:`get` finds a running one, and the
:class:`Cluster` handle reports, scales and stops it, on whichever backend runs it.

Example::

    import raykube

    with raykube.up("clusters/local.yaml") as cluster:
        print(cluster.dashboard_url)
        cluster.scale("cpu", 3)
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from raykube.backends import get_backend
from raykube.backends.base import (
    LOG_NODES,
    Backend,
    Capabilities,
    ClusterStatus,
    ClusterSummary,
    Endpoints,
)
from raykube.dashboard import jobs_client
from raykube.errors import RaykubeError, SpecError
from raykube.output import html_table
from raykube.specs.cluster import ClusterSpec, load_spec


class Cluster:
    """A handle on a running cluster. Use :func:`up` or :func:`get` to make one.

    As a context manager it brings the cluster down on exit.
    """

    def __init__(self, name: str, backend: Backend) -> None:
        self.name = name
        self.backend = backend

    def __repr__(self) -> str:
        return f"Cluster(name={self.name!r}, backend={self.backend.name!r})"

    @property
    def endpoints(self) -> Endpoints:
        """Every address of the cluster (GCS, dashboard, Ray Client, Serve) and its auth token."""
        return self.backend.endpoints(self.name)

    @property
    def address(self) -> str:
        """What ``ray.init(address=...)`` takes from this process: the GCS ``host:port``, or a
        ``ray://`` Ray Client address where the cluster is reached through a port-forward."""
        return self.endpoints.driver_address

    @property
    def spec(self) -> ClusterSpec | None:
        """The spec the cluster was started from; None for a cluster raykube did not make
        (a RayCluster from Helm, kubectl or a GitOps tool): raykube then checks nothing
        against a spec and leaves it to Ray."""
        return self.backend.spec_of(self.name)

    def _repr_html_(self) -> str:
        """A notebook's view: state, dashboard link, worker groups."""
        try:
            status = self.status()
        except RaykubeError as exc:
            return html_table(f"cluster {self.name}", [("backend", self.backend.name),
                                                       ("state", f"unknown: {exc.message}")])
        endpoints = status.endpoints
        return html_table(
            f"cluster {self.name}",
            [("backend", self.backend.name), ("state", "ready" if status.is_ready else
                                              "not ready"),
             ("head", "up" if status.head_ready else "down"),
             ("dashboard", endpoints.dashboard_url if endpoints else None)],
            (["group", "ready", "replicas", "min", "max"],
             [[g.name, g.ready, g.replicas, g.min_replicas, g.max_replicas]
              for g in status.groups]))

    @property
    def capabilities(self) -> Capabilities:
        """What the cluster's backend can do (shared filesystem, host Python envs, ...)."""
        return self.backend.capabilities

    @property
    def dashboard_url(self) -> str:
        """The dashboard (Jobs API) URL, for ``ray job submit --address``."""
        return self.endpoints.dashboard_url

    def status(self) -> ClusterStatus:
        """Groups, nodes and health now."""
        return self.backend.status(self.name)

    def scale(self, group: str, replicas: int, *, timeout: float = 120.0) -> ClusterStatus:
        """Set worker group ``group`` to ``replicas`` workers and wait until they run.

        Raises:
            ScaleError: no such group, or ``replicas`` outside [minReplicas, maxReplicas].
            ReadyTimeout: the workers did not all join (or leave) in time.
        """
        return self.backend.scale(self.name, group, replicas, timeout=timeout)

    def wait(self, *, timeout: float = 120.0) -> ClusterStatus:
        """Wait until every group has the replicas asked of it."""
        return self.backend.wait(self.name, timeout=timeout)

    def down(self, *, timeout: float = 60.0, purge: bool = False) -> None:
        """Stop the cluster and everything it runs; its logs are kept (:func:`logs`) unless
        ``purge``. A driver this process attached to the cluster is detached first."""
        self._detach_driver()
        self.backend.down(self.name, timeout=timeout, purge=purge)

    def _detach_driver(self) -> None:
        """``ray.shutdown()`` when this process is a Ray driver of this cluster: Ray ends a
        driver's whole process once its node's object store goes (a notebook kernel, a test
        run), where a driver detached first simply lives on."""
        import ray

        if not ray.is_initialized() or ray.util.client.ray.is_connected():
            return  # a Ray Client driver only loses its connection
        if ray.get_runtime_context().gcs_address == self.endpoints.gcs_address:
            ray.shutdown()

    def upload_working_dir(self, folder: str) -> str:
        """Upload ``folder`` to the cluster (as `ray job submit` does) and return its gcs://
        URI, for a runtime env's ``working_dir``. The Jobs SDK's own upload: a
        content-addressed package, so unchanged code keeps its URI."""
        endpoints = self.endpoints
        runtime_env = {"working_dir": folder}
        jobs_client(endpoints.dashboard_url, endpoints.auth_token_path
                    )._upload_working_dir_if_needed(runtime_env)
        return str(runtime_env["working_dir"])

    def logs(self, out_dir: str | Path, *, node: str = "all") -> dict[str, Path]:
        """Copy the cluster's logs into ``out_dir`` (see :func:`logs`)."""
        return self.backend.logs(self.name, Path(out_dir), node=_log_node(node))

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()


def up(
    spec: ClusterSpec | str | Path,
    *,
    backend: str = "local",
    timeout: float = 180.0,
    namespace: str | None = None,
) -> Cluster:
    """Start the cluster ``spec`` describes and return once every worker group is ready.

    Args:
        spec: a :class:`ClusterSpec`, or the path of a spec file.
        backend: 'local' (this machine) or 'kuberay' (Kubernetes).
        timeout: seconds to wait for readiness.
        namespace: Kubernetes namespace (default: the spec's, else the kubeconfig
            context's, else the pod's service account's).

    Returns:
        A :class:`Cluster` handle.

    Raises:
        SpecError: the spec is invalid (nothing was started).
        ClusterExists: a cluster of that name is already running.
        PortInUse: a pinned port is taken.
        ReadyTimeout: it did not become ready; what was started has been stopped.

    Example::

        cluster = raykube.up("clusters/local.yaml")
        ray.init(address=cluster.address)
    """
    spec = _spec_in(spec, namespace)
    chosen = get_backend(backend, namespace=namespace or spec.namespace)
    chosen.up(spec, timeout=timeout)
    return Cluster(spec.name, chosen)


def dry_run(spec: ClusterSpec | str | Path, *, backend: str = "kuberay",
            namespace: str | None = None) -> list[str]:
    """Check with the platform everything :func:`up` would make, making nothing: on
    Kubernetes a server-side dry run of each object (CRD schemas, admission, RBAC, quotas).

    Returns:
        ``Kind namespace/name`` of each object checked.

    Raises:
        SpecError: the spec, or the server's validation of a field; BackendError: RBAC, no
        KubeRay, unreachable API, or a backend without a server to ask.
    """
    spec = _spec_in(spec, namespace)
    return get_backend(backend, namespace=namespace or spec.namespace).dry_run(spec)


def _spec_in(spec: ClusterSpec | str | Path, namespace: str | None) -> ClusterSpec:
    """The spec, loaded, refused when it names a namespace other than ``namespace`` (as
    ``kubectl apply -n`` refuses an object of another namespace)."""
    if not isinstance(spec, ClusterSpec):
        spec = load_spec(spec)
    if namespace and spec.namespace and namespace != spec.namespace:
        raise SpecError(f"the spec's namespace is {spec.namespace!r}, not {namespace!r}",
                        f"drop -n, pass -n {spec.namespace}, or remove namespace: from the spec")
    return spec


def get(name: str, *, backend: str = "local", namespace: str | None = None) -> Cluster:
    """A handle on running cluster ``name``.

    Raises:
        ClusterNotFound: nothing of that name runs.
    """
    chosen = get_backend(backend, namespace=namespace)
    chosen.endpoints(name)  # raises ClusterNotFound early
    return Cluster(name, chosen)


def list_clusters(
    *, backend: str = "local", namespace: str | None = None, all_namespaces: bool = False
) -> list[ClusterSummary]:
    """The clusters ``backend`` knows: locally the ones raykube runs (or a crash left dead);
    on Kubernetes every RayCluster of the namespace (or of all, with ``all_namespaces``),
    whoever made it.

    Raises:
        SpecError: ``all_namespaces`` where there are no namespaces (the local backend).
    """
    return get_backend(backend, namespace=namespace).list(all_namespaces=all_namespaces)


def logs(name: str, out_dir: str | Path, *, node: str = "all", backend: str = "local",
         namespace: str | None = None) -> dict[str, Path]:
    """Copy cluster ``name``'s logs into ``out_dir``, one entry per node (``head``,
    ``worker-...``): a running cluster's, else those kept when it went down (``down`` keeps
    them: locally each node's Ray log folder, on Kubernetes each pod's log).

    Args:
        node: ``head``, ``worker`` or ``all``.

    Raises:
        SpecError: ``node`` is not one of those.
        ClusterNotFound: the cluster neither runs nor left logs.
    """
    return get_backend(backend, namespace=namespace).logs(name, Path(out_dir),
                                                          node=_log_node(node))


def _log_node(node: str) -> str:
    """``node`` if it names whose logs to copy; else a SpecError naming the choices."""
    if node not in LOG_NODES:
        raise SpecError(f"node {node!r} is not one of {', '.join(LOG_NODES)}",
                        "pass node='head', 'worker' or 'all'")
    return node
