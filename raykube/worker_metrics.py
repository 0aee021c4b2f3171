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

A process exports to its node's agent on an interval (Ray's ``metrics_report_interval_ms``), so
a run whose loop ends between two exports would take its last values with it: rank 0 waits, at
the end of the loop, until the agent serves them (:meth:`TrainMetrics.wait_exported`).
"""

from __future__ import annotations

import logging
import math
import re
import time
import urllib.request
from typing import Any

from raykube.errors import ReadyTimeout
from raykube.progress import LOGGER_NAME
from raykube.waiting import wait_for

logger = logging.getLogger(f"{LOGGER_NAME}.train")

MAX_METRICS = 50
"""Metric names one run exports (a loop that reports per-step keys would be unbounded)."""

EXPORT_WAIT_S = 30.0
"""The longest rank 0 waits for its last values to be exported (two of Ray's default 10 s
intervals, and some slack): a node whose agent is gone must not hold up a finished run."""

_SAMPLE = re.compile(r'^ray_raykube_train_metric\{(?P<labels>[^}]*)\} (?P<value>\S+)', re.M)


class TrainMetrics:
    """Rank 0's exported series for one run (see the module docstring)."""

    def __init__(self, run: str, framework: str) -> None:
        from ray.util.metrics import Counter, Gauge

        self._tags = {"run": run, "framework": framework}
        self._last: dict[str, float] = {}
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
            if name not in self._last and len(self._last) >= MAX_METRICS:
                continue
            self._last[name] = float(value)
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

    def wait_exported(self, timeout: float = EXPORT_WAIT_S) -> bool:
        """Wait until this node's Ray metrics agent serves the last value of every metric, so
        Prometheus can scrape them after the run's workers are gone. False (and a warning) when
        they did not show up within ``timeout`` seconds; the run's result is unaffected."""
        if not self._last:
            return True
        endpoint = _agent_endpoint()
        if endpoint is not None:
            try:
                return wait_for(lambda: self._served(endpoint), timeout=timeout,
                                what="the run's last metrics at this node's metrics agent")
            except ReadyTimeout:
                pass
        logger.warning("the run's last metrics were not seen at this node's metrics agent "
                       "within %.0f s: Prometheus may not have them", timeout)
        return False

    def _served(self, endpoint: str) -> bool:
        """Whether ``endpoint`` (a node agent's /metrics) serves every last value of this run."""
        try:
            with urllib.request.urlopen(endpoint, timeout=5) as answer:
                text = answer.read().decode("utf-8", "replace")
        except OSError:
            return False
        run = f'run="{self._tags["run"]}"'
        served: dict[str, float] = {}
        for sample in _SAMPLE.finditer(text):
            labels = sample["labels"]
            name = re.search(r'metric="([^"]*)"', labels)
            if run in labels and name is not None:
                try:
                    served[name[1]] = float(sample["value"])
                except ValueError:
                    continue
        return all(k in served and math.isclose(served[k], v, rel_tol=1e-9)
                   for k, v in self._last.items())


def _agent_endpoint() -> str | None:
    """This node's Ray metrics agent, as Ray's node table lists it (None off a cluster)."""
    try:
        import ray

        here = ray.get_runtime_context().get_node_id()
        for node in ray.nodes():
            if node.get("NodeID") == here and node.get("MetricsExportPort"):
                return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    except Exception:  # not in a Ray worker, or the GCS is unreachable: nothing to wait for
        return None
    return None
