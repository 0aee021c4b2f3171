"""The Redis that keeps a local cluster's GCS state (``gcsFaultToleranceOptions``): checked
before a head starts, and cleared of the cluster's keys when the cluster is taken down, as
KubeRay's Redis clean-up job does for a deleted RayCluster."""

from __future__ import annotations

import socket

from raykube.errors import BackendError
from raykube.progress import Progress

_CONNECT_TIMEOUT_S = 3.0


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def check_redis(address: str) -> None:
    """Make sure a Redis that needs no password answers at ``address`` (host:port).

    Raises:
        BackendError: nothing listens there, it is not Redis, or it wants a password.
    """
    host, port = _host_port(address)
    where = f"gcsFaultToleranceOptions.redisAddress {address}"
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S) as connection:
            connection.sendall(b"PING\r\n")
            answer = connection.recv(64)
    except OSError as exc:
        raise BackendError(
            f"{where}: no Redis answers there ({exc.strerror or exc})",
            f"start Redis first (e.g. `redis-server --port {port} --bind 127.0.0.1`), or "
            "correct the address",
        ) from None
    if answer.startswith(b"-NOAUTH"):
        raise BackendError(f"{where}: that Redis wants a password",
                           "locally, use a Redis without one that listens on 127.0.0.1 only")
    if answer.startswith(b"-"):
        reason = answer[1:].split(b"\r\n")[0].decode(errors="replace")[:120]
        raise BackendError(f"{where}: that Redis refuses raykube's clients: {reason}",
                           "let it accept connections from this machine without a password")
    if not answer.startswith(b"+PONG"):
        raise BackendError(f"{where}: what answers there is not Redis",
                           "point redisAddress at a Redis server")


def forget_cluster_state(address: str, namespace: str, *, progress: Progress) -> None:
    """Delete the cluster's keys (prefix ``namespace``) from the Redis at ``address``; a
    Redis that is gone is reported, not an error: the cluster is down either way."""
    from ray._private.gcs_utils import cleanup_redis_storage

    host, port = _host_port(address)
    try:
        cleanup_redis_storage(host=host, port=port, password="", use_ssl=False,
                              storage_namespace=namespace)
    except Exception as exc:  # noqa: BLE001 - Ray raises whatever its Redis client raised
        progress.say(f"could not remove the cluster's keys from Redis at {address} ({exc}); "
                     f"delete the keys starting with {namespace!r} by hand")
