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
import secrets
import signal
from collections.abc import Callable

import psutil

from raykube.errors import ReadyTimeout
from raykube.waiting import wait_for

MARKER_ENV = "RAYKUBE_CLUSTER_MARKER"

NODE_ID_VARIABLE = "RAY_OVERRIDE_NODE_ID_FOR_TESTING"
"""Where Ray's fake node provider puts a simulated node's id: every process of the node (its
raylet, agents and workers) inherits it."""

HEAD_NODE_ID_PREFIX = "0" * 40
"""How the head's node ids begin (worker nodes' ids, given by Ray's fake provider, begin with
``f``). The head gets a fresh id each time it starts: a head started again after a loss must
not reuse the id the restored GCS still lists for the lost one, which it would declare dead."""


def new_head_node_id() -> str:
    """A fresh node id for the head (56 hex digits, as Ray's node ids)."""
    return HEAD_NODE_ID_PREFIX + secrets.token_hex(8)


def _on_the_head(env: dict[str, str]) -> bool:
    return env.get(NODE_ID_VARIABLE, HEAD_NODE_ID_PREFIX).startswith(HEAD_NODE_ID_PREFIX)


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


def _environ(process: psutil.Process) -> dict[str, str]:
    """The environment ``process`` started with, read from the nearest ancestor that still
    shows one: Ray's agents retitle themselves (``ray::DashboardAgent``) over the memory that
    held their environment, which then reads as empty, and an agent belongs to the node of the
    raylet that started it."""
    for _ in range(8):
        env = process.environ()
        parent = process.parent()
        if env or parent is None or parent.pid <= 1:
            return env
        process = parent
    return {}


def _marked(marker: str, node: str | None = "") -> list[psutil.Process]:
    """The live processes of the cluster marked ``marker``: all of them (``node=""``), those
    of one simulated worker node (its id), or the head's (``None``: on no worker node)."""
    def matches(process: psutil.Process) -> bool:
        env = _environ(process)
        if env.get(MARKER_ENV) != marker:
            return False
        if node is None:
            return _on_the_head(env)
        return node == "" or env.get(NODE_ID_VARIABLE) == node

    return _live(matches)


def find_processes(marker: str) -> list[int]:
    """PIDs of live processes whose environment carries ``marker``."""
    return [p.pid for p in _marked(marker)]


def find_node_processes(marker: str, node_id: str) -> list[int]:
    """PIDs of every live process of one simulated node of the cluster marked ``marker`` (node
    ids repeat across clusters, so the marker is matched too)."""
    return [p.pid for p in _marked(marker, node_id)]


def find_head_processes(marker: str) -> list[int]:
    """PIDs of the head's processes (GCS, head raylet, dashboard, autoscaler, their workers):
    the cluster's processes that belong to no simulated worker node."""
    return [p.pid for p in _marked(marker, None)]


def worker_node_ids(marker: str) -> set[str]:
    """Ids of the simulated worker nodes of the cluster that still have a live process."""
    ids: set[str] = set()

    def collect(process: psutil.Process) -> bool:
        env = _environ(process)
        if env.get(MARKER_ENV) == marker and not _on_the_head(env):
            ids.add(env[NODE_ID_VARIABLE])
        return False

    _live(collect)
    return ids


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


def stop_processes(marker: str, *, node: str | None = "", grace: float = 2.0,
                   timeout: float = 17.0) -> int:
    """SIGTERM every process of the cluster (or of one node, or the head's: ``node`` as in
    :func:`_marked`), SIGKILL what is left after ``grace`` seconds, and
    return once every one of them is gone (ReadyTimeout after ``timeout`` seconds in all).

    Processes are followed once found: an exiting process's environment can no longer be
    read, so the marker alone would call it gone too early. Processes started while stopping
    (a worker the raylet was spawning) are caught by re-scanning.

    Returns:
        How many processes were stopped.
    """
    stopped = set(_marked(marker, node))
    if not stopped:
        return 0
    _signal_all(stopped, signal.SIGTERM)

    def all_gone() -> bool:
        late = set(_marked(marker, node)) - stopped
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
