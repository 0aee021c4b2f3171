"""What the figures were measured on: CPUs, memory, GPU, versions, date."""

from __future__ import annotations

import datetime
import os
import platform
import socket
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for native launchers, servers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def describe() -> dict[str, Any]:
    """The machine and software versions, for every results file."""
    import ray

    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "ray": ray.__version__,
    }
    try:
        with open("/proc/meminfo") as handle:
            kib = int(handle.readline().split()[1])
        info["memory_gib"] = round(kib / 2**20, 1)
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except ImportError:
        info["gpu"] = "unknown"
    return info
