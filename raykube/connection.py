"""Attach this Python process to a cluster as a Ray driver: scripts, notebooks and training.

:func:`connect` resolves what the user gave through :func:`raykube.target.resolve` (a
:class:`~raykube.cluster.Cluster`, a cluster name, a ``host:port`` / ``ray://`` address, or
nothing inside a Ray job), sets Ray's token-auth environment for that cluster, and calls
``ray.init``. A client whose Ray or Python version
differs from the cluster's gets a clear error naming both versions.

Example (notebook cells)::

    conn = raykube.connect("local")
    ray.get(square.remote(4))
    conn.disconnect()
"""

from __future__ import annotations

import platform
from typing import Any

from raykube.auth import apply_client_env
from raykube.errors import BackendError, RaykubeError
from raykube.output import html_table
from raykube.progress import Progress, verbose
from raykube.target import ClusterRef, resolve



def _check_versions(context: Any) -> None:
    """Raise when this client's Ray or Python differs from the cluster's."""
    import ray

    cluster_python = getattr(context, "python_version", None)
    cluster_ray = getattr(context, "ray_version", None)
    ours = platform.python_version()
    if cluster_ray and cluster_ray != ray.__version__:
        raise RaykubeError(
            f"this client runs Ray {ray.__version__} but the cluster runs Ray {cluster_ray}",
            f"install ray=={cluster_ray} in this environment (pip install 'ray[default]=="
            f"{cluster_ray}')",
        )
    if cluster_python and cluster_python.rsplit(".", 1)[0] != ours.rsplit(".", 1)[0]:
        raise RaykubeError(
            f"this client runs Python {ours} but the cluster runs Python {cluster_python}",
            f"use a Python {cluster_python.rsplit('.', 1)[0]} environment for this notebook",
        )


_connected_address: str | None = None
"""The address :func:`ensure_connected` last connected this process to. Ray keeps one
connection per process, so a call for another cluster must not reuse it silently (a run would
land on the wrong cluster). A connection made by ``ray.init`` outside raykube is not known and is
used as it is."""

CLIENT_INIT_ATTEMPTS = 3
"""Tries of a Ray Client (``ray://``) connection whose server failed to initialise: on a head
that has just come up the per-client server can miss the proxy's start-up deadline (seen on
KubeRay heads right after ``up``), and the next try succeeds."""


def _init(address: str) -> Any:
    import ray

    attempts = CLIENT_INIT_ATTEMPTS if address.startswith("ray://") else 1
    for attempt in range(1, attempts + 1):
        try:
            return ray.init(address=address, log_to_driver=True,
                            logging_level="INFO" if verbose() else "WARNING")
        except ConnectionAbortedError as exc:
            if attempt == attempts or "Initialization failure" not in str(exc):
                raise
            ray.shutdown()
            Progress().say(f"the Ray Client server at {address} failed to start a session "
                           f"(try {attempt}/{attempts}); trying again")
    raise AssertionError("unreachable")


def ensure_connected(cluster: ClusterRef = None) -> Any:
    """Connect with ``ray.init`` unless this process is connected already; return the context.

    Raises:
        ClusterNotFound, ClusterError: see :func:`raykube.target.resolve`.
        RaykubeError: a version mismatch, or raykube connected this process to another
            cluster before.
        BackendError: Ray refused the connection.
    """
    import ray

    global _connected_address
    if ray.is_initialized():
        if cluster is not None and _connected_address is not None:
            asked = resolve(cluster).driver_address()[0]
            if asked != _connected_address:
                raise RaykubeError(
                    f"this process is connected to the cluster at {_connected_address}, "
                    f"not to {asked}",
                    "leave the first one before using another: ray.shutdown() (or "
                    "Connection.disconnect())",
                )
        return ray.get_runtime_context()
    address, token_path = resolve(cluster).driver_address()
    if token_path:
        apply_client_env(token_path)
    try:
        context = _init(address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        text = str(exc)
        if "version" in text.lower() and "mismatch" in text.lower():
            raise RaykubeError(
                f"Ray refused the connection: {text.splitlines()[0]}",
                "use the same Ray and Python versions as the cluster",
            ) from exc
        if "auth" in text.lower() or "token" in text.lower():
            raise BackendError(
                f"the cluster at {address} rejected this client's token: {text.splitlines()[0]}",
                "use the cluster's token: RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token",
            ) from exc
        raise BackendError(
            f"cannot connect to the cluster at {address}: {text.splitlines()[0] if text else exc}",
            "is it running? `raykube list`",
            retryable=True,
        ) from exc
    _check_versions(context)
    _connected_address = address
    return context


class Connection:
    """This process attached to a cluster as a Ray driver.

    Made by :func:`connect`, which connects at once, so a notebook can use it across cells
    (``conn = raykube.connect("local")`` ... ``conn.disconnect()``) or in a ``with`` block.
    """

    def __init__(self, context: Any) -> None:
        self.context = context

    @property
    def dashboard_url(self) -> str:
        """The dashboard of the connected cluster."""
        return str(self.context.dashboard_url)

    def _repr_html_(self) -> str:
        """A notebook's view: where this kernel is connected, then Ray's own widget."""
        ray_widget = getattr(self.context, "_repr_html_", None)
        return html_table("raykube connection", [
            ("address", _connected_address or "(made by ray.init)"),
            ("dashboard", self.dashboard_url)]) + (ray_widget() if ray_widget else "")

    def disconnect(self) -> None:
        """Leave the cluster (``ray.shutdown()``); the cluster keeps running."""
        import ray

        ray.shutdown()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()


def connect(cluster: ClusterRef = None) -> Connection:
    """Connect this process (a script or a notebook) to ``cluster`` as a Ray driver.

    Ray tasks, actors and :func:`raykube.train` runs then go to that cluster.

    Args:
        cluster: a :class:`Cluster`, a cluster name (``kuberay:NAMESPACE/NAME`` on
            Kubernetes), or a ``host:port`` / ``ray://`` address; None inside a Ray job.

    Returns:
        A :class:`Connection`; use it in a ``with`` block or call ``.disconnect()``.

    Raises:
        ClusterNotFound: no such running cluster.
        RaykubeError: this client's Ray or Python version differs from the cluster's.
        BackendError: Ray refused the connection (a wrong token, say).

    Example::

        with raykube.connect("local"):
            print(ray.cluster_resources())
    """
    return Connection(ensure_connected(cluster))


__all__ = ["Connection", "connect", "ensure_connected"]
