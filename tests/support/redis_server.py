"""A real Redis for the GCS fault-tolerance tests (Debian's ``redis-server``), started on a free
port without persistence, and read with raw RESP calls (no client library needed).

Test support, shared by the local head-loss test and the KubeRay one.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from raykube.waiting import wait_for

REDIS = shutil.which("redis-server")


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """``redis-server`` listening on ``host`` (loopback, or the pod bridge for pods), for a
    ``with`` block."""

    def __init__(self, folder: Path, host: str = "127.0.0.1") -> None:
        self.host, self.port, self.folder = host, _free_port(host), folder
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port``, as ``gcsFaultToleranceOptions.redisAddress`` takes it."""
        return f"{self.host}:{self.port}"

    def keys(self) -> list[str]:
        """Every key in this Redis."""
        with socket.create_connection((self.host, self.port), timeout=5) as connection:
            connection.sendall(b"KEYS *\r\n")
            data = b""
            while not _whole_array(data):
                if data.startswith(b"-"):
                    raise OSError(f"redis refused: {data[:200]!r}")
                chunk = connection.recv(65536)
                if not chunk:
                    raise OSError("redis closed the connection mid-answer")
                data += chunk
        return [line.decode() for line in data.split(b"\r\n")[2::2] if line]

    def _answers(self) -> bool:
        try:
            self.keys()
            return True
        except OSError:
            return False

    def __enter__(self) -> RedisServer:
        assert REDIS is not None, "redis-server is not installed (.ci/run installs it)"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            # Protected mode refuses every address but loopback without a password; pods reach
            # this one on the pod bridge, which no packet leaves.
            [REDIS, "--port", str(self.port), "--bind", self.host, "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(self._answers, timeout=30, what=f"redis-server at {self.address} to answer")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None
        self._process.terminate()
        self._process.wait(timeout=30)


def _whole_array(data: bytes) -> bool:
    """Whether ``data`` holds a whole RESP array of bulk strings (``*N`` then N pairs)."""
    if not data.endswith(b"\r\n"):
        return False
    count = int(data.split(b"\r\n", 1)[0][1:] or 0)
    return data.count(b"\r\n") >= 1 + 2 * count
