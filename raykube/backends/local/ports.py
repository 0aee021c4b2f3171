"""Free ports for a new cluster, and a clear error when a pinned one is taken."""

from __future__ import annotations

import socket

from raykube.errors import PortInUse


def is_free(port: int) -> bool:
    """Whether nothing listens on ``port`` (checked by binding it on all interfaces)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def pick_free_ports(count: int) -> list[int]:
    """``count`` distinct ports free now (the kernel's choice, held until all are picked)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def require_free(port: int, what: str, cluster: str) -> None:
    """Raise :class:`PortInUse` naming the port's role when ``port`` is taken."""
    if not is_free(port):
        raise PortInUse(
            f"cluster {cluster!r}: port {port} for the {what} is already in use",
            f"stop what listens there (`ss -ltnp 'sport = :{port}'`), or remove the port from "
            "headGroupSpec.rayStartParams so raykube picks a free one",
        )
