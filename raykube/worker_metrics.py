"""What a training run's rank 0 exports, through Ray's own metrics pipeline.

Ray Train exports its own system series (``ray_train_*``) but not the values a loop reports;
raykube exports those from rank 0's :func:`raykube.worker.report` as ``ray.util.metrics``, which
the node's Ray metrics agent serves beside Ray's (renamed from ``ray_raykube_*`` to
``raykube_*`` by raykube's scrape configuration, as the serving series are):

- ``raykube_train_metric{run,framework,metric}``: the last value of every numeric metric the
  loop reported (``loss``, ``test_accuracy``, ...; at most :data:`MAX_METRICS` names);
- ``raykube_train_epochs_total{run,framework}``: reports that carry an ``epoch``;
- ``raykube_train_checkpoints_total{run}``: reports that wrote a checkpoint;
- ``raykube_train_restarts_total{run}``: starts that resumed from a checkpoint (after a
  failure, an elastic resize, or a run started again under its name);
- ``raykube_train_samples_per_second{run,framework}``: where the loop reports ``samples`` (the
  samples rank 0 processed since its previous report), that over the seconds between them.
"""

from __future__ import annotations

import math
import time
from typing import Any

MAX_METRICS = 50
"""Metric names one run exports (a loop that reports per-step keys would be unbounded)."""


class TrainMetrics:
    """Rank 0's exported series for one run (see the module docstring)."""

    def __init__(self, run: str, framework: str) -> None:
        from ray.util.metrics import Counter, Gauge

        self._tags = {"run": run, "framework": framework}
        self._names: set[str] = set()
        self._last_report: float | None = None
        self.value = Gauge("raykube_train_metric", "The last value rank 0 reported.",
                           tag_keys=("run", "framework", "metric"))
        self.epochs = Counter("raykube_train_epochs_total", "Reports that carry an epoch.",
                              tag_keys=("run", "framework"))
        self.checkpoints = Counter("raykube_train_checkpoints_total",
                                   "Reports that wrote a checkpoint.", tag_keys=("run",))
        self.restarts = Counter("raykube_train_restarts_total",
                                "Starts that resumed from a checkpoint.", tag_keys=("run",))
        self.throughput = Gauge("raykube_train_samples_per_second",
                                "Samples rank 0 processed per second between two reports.",
                                tag_keys=("run", "framework"))

    def reported(self, metrics: dict[str, Any], *, checkpoint: bool) -> None:
        """One report of rank 0."""
        now = time.monotonic()
        for name, value in metrics.items():
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value)):
                continue
            if name not in self._names and len(self._names) >= MAX_METRICS:
                continue
            self._names.add(name)
            self.value.set(float(value), tags={**self._tags, "metric": name})
        if "epoch" in metrics:
            self.epochs.inc(tags=self._tags)
        if checkpoint:
            self.checkpoints.inc(tags={"run": self._tags["run"]})
        samples = metrics.get("samples")
        if (isinstance(samples, int | float) and not isinstance(samples, bool)
                and self._last_report is not None and now > self._last_report):
            self.throughput.set(samples / (now - self._last_report), tags=self._tags)
        self._last_report = now

    def restarted(self) -> None:
        """This start resumed from a checkpoint."""
        self.restarts.inc(tags={"run": self._tags["run"]})
