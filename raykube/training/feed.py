"""Rank 0's reports, carried to the driver as they happen, and said there as progress.

Ray forwards what workers print to the driver as text, once per line, prefixed with the
actor's name and PID; a driver cannot draw an epoch bar from that, nor can a library user
route it. So rank 0's :func:`raykube.worker.report` puts each report on a small Ray queue (an
actor that holds no CPU, so it fits on a head started with ``num-cpus: 0``) and a thread of
the driver says it through raykube's logger: one line per report in CI and logs, one bar
that redraws itself on a terminal.
"""

from __future__ import annotations

import threading
from typing import Any

from raykube.progress import Progress
from raykube.worker import metrics_text

POLL_S = 0.5
"""How often the driver takes what rank 0 reported (seconds)."""

QUEUE_SIZE = 256
"""Reports held for the driver at most; rank 0 drops a report rather than wait for room."""


def progress_step(metrics: dict[str, Any], total_epochs: int | None) -> tuple[int, int] | None:
    """(epochs done, total) when the loop reports a 0-based ``epoch`` and the run's config
    says how many ``epochs`` it runs; None otherwise (a plain line)."""
    epoch = metrics.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not total_epochs:
        return None
    return (epoch + 1, total_epochs)


class ReportFeed:
    """The queue rank 0 reports to, and the driver thread that says what arrives.

    Use as a context manager around ``trainer.fit()``; the queue actor goes when it exits.
    """

    def __init__(self, run_name: str, total_epochs: int | None) -> None:
        self._run_name = run_name
        self._total = total_epochs
        self._progress = Progress()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.queue: Any = None

    def __enter__(self) -> ReportFeed:
        from ray.util.queue import Queue

        self.queue = Queue(maxsize=QUEUE_SIZE, actor_options={"num_cpus": 0})
        self._thread = threading.Thread(target=self._follow, name="raykube-report-feed",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._say_waiting()
        try:
            self.queue.shutdown(force=True)
        except Exception:  # the cluster may already be gone (an interrupted run)
            pass

    def _say(self, metrics: dict[str, Any]) -> None:
        self._progress.say(f"training {self._run_name}: {metrics_text(metrics)}",
                           step=progress_step(metrics, self._total))

    def _say_waiting(self) -> None:
        try:
            for metrics in self.queue.get_nowait_batch(self.queue.qsize()):
                self._say(metrics)
        except Exception:  # progress only: a lost queue must not fail a finished run
            pass

    def _follow(self) -> None:
        while not self._stop.wait(POLL_S):
            self._say_waiting()
