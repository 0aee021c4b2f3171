"""Apache MXNet on Ray Train: a backend that runs ps-lite's ``dist_sync`` parameter server.

Ray never had an MXNet trainer, so raykube adds one the way Ray adds frameworks: a
``BackendConfig`` and a ``Backend`` whose hooks the Train controller calls at every (re)start of
the worker group. ``on_start`` has rank 0 start the ps-lite scheduler and parameter servers as
child processes (with the MXNet interpreter) and gives every worker its ``DMLC_*``
environment; ``on_shutdown`` stops them. The servers carry a watchdog that ends them when the
worker that started them dies, so a restart after a failure never meets stale servers.

Imported only when an MXNet run is built (:meth:`raykube.frameworks.mxnet.MXNet.make_trainer`):
it subclasses Ray Train's backend classes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from ray.train.backend import Backend, BackendConfig

# A scheduler or server: a watchdog thread ends it when the worker that started it is gone,
# then importing mxnet with DMLC_ROLE set runs ps-lite's loop until the workers finish.
_PS_PROCESS = """
import os, threading
parent = int(os.environ["RAYKUBE_PS_PARENT"])
stop = threading.Event()
def watch():
    while not stop.wait(1.0):
        if os.getppid() != parent:
            os._exit(0)
threading.Thread(target=watch, daemon=True).start()
from raykube.frameworks.mxnet import patch_numpy
patch_numpy()
import mxnet
"""

_processes: list[subprocess.Popen[bytes]] = []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def start_parameter_servers(num_servers: int, num_workers: int) -> dict[str, str]:
    """Run on rank 0: start the scheduler and ``num_servers`` servers; return the workers' env.

    Idempotent: whatever a previous start left in this process is stopped first.
    """
    import ray.util

    stop_parameter_servers()
    host = ray.util.get_node_ip_address()
    env = {
        "DMLC_PS_ROOT_URI": host,
        "DMLC_PS_ROOT_PORT": str(_free_port()),
        "DMLC_NUM_SERVER": str(num_servers),
        "DMLC_NUM_WORKER": str(num_workers),
    }
    for role in ["scheduler"] + ["server"] * num_servers:
        process_env = {
            **os.environ, **env, "DMLC_ROLE": role, "DMLC_NODE_HOST": host,
            "RAYKUBE_PS_PARENT": str(os.getpid()), "OMP_NUM_THREADS": "1",
        }
        _processes.append(
            subprocess.Popen([sys.executable, "-c", _PS_PROCESS], env=process_env,
                             stdin=subprocess.DEVNULL)
        )
    return env


def stop_parameter_servers() -> int:
    """Stop the ps-lite processes this worker started; returns how many were running."""
    running = [p for p in _processes if p.poll() is None]
    for process in running:
        process.send_signal(signal.SIGKILL)
    for process in _processes:
        process.wait()
    _processes.clear()
    return len(running)


def set_worker_env(env: dict[str, str]) -> None:
    """Run on every worker: join the parameter server as a ``dist_sync`` worker."""
    import ray.util

    os.environ.update(env)
    os.environ["DMLC_ROLE"] = "worker"
    os.environ["DMLC_NODE_HOST"] = ray.util.get_node_ip_address()


@dataclass
class MXNetConfig(BackendConfig):  # type: ignore[misc]
    """Configuration of the MXNet backend.

    Attributes:
        num_servers: ps-lite parameter servers started beside rank 0 (default 1).
    """

    num_servers: int = 1

    @property
    def backend_cls(self) -> type[Backend]:
        return _MXNetBackend


class _MXNetBackend(Backend):  # type: ignore[misc]
    """Starts and stops ps-lite around each start of the worker group."""

    def on_start(self, worker_group: Any, backend_config: MXNetConfig) -> None:
        env = worker_group.execute_single(
            0, start_parameter_servers, backend_config.num_servers, len(worker_group)
        )
        worker_group.execute(set_worker_env, env)

    def on_shutdown(self, worker_group: Any, backend_config: MXNetConfig) -> None:
        try:
            worker_group.execute_single(0, stop_parameter_servers)
        except Exception:  # noqa: BLE001 - rank 0 is gone already; its watchdogs end the servers
            pass
