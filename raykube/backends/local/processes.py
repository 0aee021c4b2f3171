"""Find and stop every process of one local cluster.

``ray start`` puts its daemons in new sessions, and the fake node provider starts worker
raylets from the autoscaler's process, so neither a PID nor a process group covers a cluster.
Instead raykube puts a unique marker in the head's environment; every Ray process of the
cluster (GCS, raylets, dashboard, agents, workers, the nodes the autoscaler adds) inherits it.
Processes are read through psutil, which keeps a process's identity by its start time (a PID
the system reuses for another process is not taken for the old one) and reads environments on
Linux and macOS alike.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import psutil

from raykube.errors import ReadyTimeout
from raykube.waiting import wait_for

MARKER_ENV = "RAYKUBE_CLUSTER_MARKER"

NODE_ID_VARIABLE = "RAY_OVERRIDE_NODE_ID_FOR_TESTING"
"""Where Ray's fake node provider puts a simulated node's id: every process of the node (its
raylet, agents and workers) inherits it."""


def _live(matches: Callable[[psutil.Process], bool]) -> list[psutil.Process]:
    """Live (non-zombie) processes, other than this one, that ``matches`` accepts; a process
    that exits or denies access while being read is left out."""
    found: list[psutil.Process] = []
    for process in psutil.process_iter():
        try:
            if (process.pid != os.getpid() and process.status() != psutil.STATUS_ZOMBIE
                    and matches(process)):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _marked(marker: str) -> list[psutil.Process]:
    return _live(lambda p: p.environ().get(MARKER_ENV) == marker)


def find_processes(marker: str) -> list[int]:
    """PIDs of live processes whose environment carries ``marker``."""
    return [p.pid for p in _marked(marker)]


def find_node_processes(marker: str, node_id: str) -> list[int]:
    """PIDs of every live process of one simulated node of the cluster marked ``marker`` (node
    ids repeat across clusters, so the marker is matched too)."""
    wanted = {MARKER_ENV: marker, NODE_ID_VARIABLE: node_id}

    def on_the_node(process: psutil.Process) -> bool:
        env = process.environ()
        return all(env.get(name) == value for name, value in wanted.items())

    return [p.pid for p in _live(on_the_node)]


def processes_mentioning(text: str) -> list[int]:
    """PIDs of live processes whose command line contains ``text`` (a path, say)."""
    return [p.pid for p in _live(lambda p: text in " ".join(p.cmdline()))]


def is_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (a zombie has exited already)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _running(process: psutil.Process) -> bool:
    """Whether ``process`` (the very one found: its PID with its start time) still runs."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


def _signal_all(processes: set[psutil.Process], sig: signal.Signals) -> None:
    """Signal each process that still runs; psutil checks it is the process found, not
    another that has taken its PID since."""
    for process in processes:
        try:
            process.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass


def stop_processes(marker: str, *, grace: float = 2.0, timeout: float = 17.0) -> int:
    """SIGTERM every process of the cluster, SIGKILL what is left after ``grace`` seconds, and
    return once every one of them is gone (ReadyTimeout after ``timeout`` seconds in all).

    Processes are followed once found: an exiting process's environment can no longer be
    read, so the marker alone would call it gone too early. Processes started while stopping
    (a worker the raylet was spawning) are caught by re-scanning.

    Returns:
        How many processes were stopped.
    """
    stopped = set(_marked(marker))
    if not stopped:
        return 0
    _signal_all(stopped, signal.SIGTERM)

    def all_gone() -> bool:
        late = set(_marked(marker)) - stopped
        if late:
            stopped.update(late)
            _signal_all(late, signal.SIGTERM)
        return not any(_running(p) for p in stopped)

    def kill_the_rest() -> bool:
        _signal_all({p for p in stopped if _running(p)}, signal.SIGKILL)
        return all_gone()

    try:
        wait_for(all_gone, timeout=grace, what="Ray processes to exit", interval=0.1)
    except ReadyTimeout:
        # SIGTERM can hang a raylet mid-shutdown; the cluster is being removed anyway.
        wait_for(kill_the_rest, timeout=max(1.0, timeout - grace),
                 what="Ray processes to die", interval=0.1)
    return len(stopped)
