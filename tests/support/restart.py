"""Kill a running server process and start it again as it was: the fault a supervisor's
restart (a container restarting, a control plane upgrade) puts a client through."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from raykube.backends.local.processes import is_alive
from raykube.waiting import wait_for


@dataclass(frozen=True)
class ProcessImage:
    """What it takes to start process ``pid`` again: its command line, environment and
    working directory, read from ``/proc`` while it runs."""

    pid: int
    argv: list[bytes]
    environ: dict[bytes, bytes]
    cwd: str

    @classmethod
    def of(cls, pid: int) -> ProcessImage:
        proc = Path(f"/proc/{pid}")
        environ = dict(entry.split(b"=", 1) for entry in
                       (proc / "environ").read_bytes().split(b"\0") if entry)
        return cls(pid, (proc / "cmdline").read_bytes().split(b"\0")[:-1], environ,
                   os.readlink(proc / "cwd"))

    def kill(self, *, group: bool = False) -> None:
        """SIGKILL it (its whole process group with ``group``) and wait until it is gone."""
        if group:
            os.killpg(self.pid, signal.SIGKILL)
        else:
            os.kill(self.pid, signal.SIGKILL)
        wait_for(self._gone, timeout=30, what=f"process {self.pid} to die")

    def _gone(self) -> bool:
        """Whether every thread of it has exited (so its sockets are closed): a zombie leader
        alone is gone; a leader that is a zombie while other threads still exit is not."""
        if is_alive(self.pid):
            return False
        try:
            return len(list(Path(f"/proc/{self.pid}/task").iterdir())) <= 1
        except FileNotFoundError:
            return True

    def start_again(self, log: IO[bytes] | None = None) -> subprocess.Popen[bytes]:
        """Start it as it was, in a session of its own, its output to ``log`` (or nowhere)."""
        output = log if log is not None else subprocess.DEVNULL
        return subprocess.Popen(self.argv, env=self.environ, cwd=self.cwd,
                                stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                start_new_session=True)
