"""Find and stop every process of one local cluster.

``ray start`` puts its daemons in new sessions, and the fake node provider starts worker
raylets from the autoscaler's process, so neither a PID nor a process group covers a cluster.
Instead raykube puts a unique marker in the head's environment; every Ray process of the
cluster (GCS, raylets, dashboard, agents, workers, the nodes the autoscaler adds) inherits it.
Linux only: it reads ``/proc/<pid>/environ``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from raykube.errors import ReadyTimeout
from raykube.waiting import wait_for

MARKER_ENV = "RAYKUBE_CLUSTER_MARKER"


def _live_processes_with(part: str, matches: Callable[[bytes], bool]) -> list[int]:
    """PIDs of live (non-zombie) processes, other than this one, whose ``/proc/<pid>/<part>``
    satisfies ``matches``."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            content = (entry / part).read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and matches(content):
            pids.append(int(entry.name))
    return pids


def find_processes(marker: str) -> list[int]:
    """PIDs of live processes whose environment carries ``marker``."""
    needle = f"{MARKER_ENV}={marker}".encode()
    return _live_processes_with("environ", lambda env: needle in env.split(b"\0"))


def processes_mentioning(text: str) -> list[int]:
    """PIDs of live processes whose command line contains ``text`` (a path, say)."""
    return _live_processes_with("cmdline", lambda cmdline: text.encode() in cmdline)


def is_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (a zombie has exited already)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _signal_all(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_processes(marker: str, *, grace: float = 2.0, timeout: float = 17.0) -> int:
    """SIGTERM every process of the cluster, SIGKILL what is left after ``grace`` seconds, and
    return once every one of them is gone (ReadyTimeout after ``timeout`` seconds in all).

    Processes are followed by PID once found: an exiting process's environment can no longer be
    read, so the marker alone would call it gone too early. Processes started while stopping
    (a worker the raylet was spawning) are caught by re-scanning.

    Returns:
        How many processes were stopped.
    """
    pids = set(find_processes(marker))
    stopped = set(pids)
    if not pids:
        return 0
    _signal_all(pids, signal.SIGTERM)

    def all_gone() -> bool:
        late = set(find_processes(marker)) - stopped
        if late:
            stopped.update(late)
            _signal_all(late, signal.SIGTERM)
        return not any(is_alive(pid) for pid in stopped)

    try:
        wait_for(all_gone, timeout=grace, what="Ray processes to exit", interval=0.1)
    except ReadyTimeout:
        # SIGTERM can hang a raylet mid-shutdown; the cluster is being removed anyway.
        _signal_all({pid for pid in stopped if is_alive(pid)}, signal.SIGKILL)
        wait_for(
            lambda: all_gone() or _signal_all(
                {pid for pid in stopped if is_alive(pid)}, signal.SIGKILL
            ),
            timeout=max(1.0, timeout - grace), what="Ray processes to die", interval=0.1,
        )
    return len(stopped)
