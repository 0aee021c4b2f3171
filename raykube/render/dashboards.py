"""raykube's Grafana dashboards and Prometheus alert rules, as data (pure).

One dashboard per workload puts the model's own figures beside the system's: training (loss and
accuracy next to throughput, restarts and the workers' CPU, memory and GPU) and serving (per
version requests, errors, p50/p99 latency and live accuracy next to replicas and the nodes' CPU,
memory and GPU). The alert rules watch the same series. Both are rendered from the lists below
(Grafana JSON, Prometheus rule groups, their Kubernetes forms in :mod:`raykube.render.monitoring`),
so the test that runs every query against a real Prometheus reads exactly what is shipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NODE_CPU = "avg by (instance) (ray_node_cpu_utilization)"
NODE_MEMORY = "sum by (instance) (ray_node_mem_used)"
NODE_GPU_DEVICE = "avg by (instance) (ray_node_gpus_utilization)"
RAY_GPUS = 'sum by (State) (ray_resources{Name="GPU"})'

VERSION_ACCURACY = (
    'sum by (service, version) (increase(raykube_serve_feedback_total{correct="true"}[15m])) / '
    "sum by (service, version) (increase(raykube_serve_feedback_total[15m]))"
)
"""Live accuracy of each version: right answers over judged answers, from feedback."""

VERSION_ERROR_RATE = (
    'sum by (service, version) (rate(raykube_serve_requests_total{code=~"5.."}[2m])) / '
    "sum by (service, version) (rate(raykube_serve_requests_total[2m]))"
)
VERSION_P99_S = (
    "histogram_quantile(0.99, sum by (service, version, le) "
    "(rate(raykube_serve_request_duration_seconds_bucket[5m])))"
)


@dataclass(frozen=True)
class Panel:
    """One Grafana time-series panel: a title, its queries (legend by label), a unit.

    ``device_only`` marks a query that has data only where a real accelerator reports (GPU
    utilization comes from the device, not from Ray's logical GPUs)."""

    title: str
    queries: tuple[tuple[str, str], ...]
    unit: str = "short"
    device_only: tuple[str, ...] = ()


TRAINING = (
    Panel("Loss", (('raykube_train_metric{metric="loss"}', "{{run}}"),)),
    Panel("Accuracy", (('raykube_train_metric{metric=~".*accuracy.*"}', "{{run}} {{metric}}"),),
          "percentunit"),
    Panel("Throughput (samples/s, rank 0)",
          (("raykube_train_samples_per_second", "{{run}}"),)),
    Panel("Epochs", (("sum by (run) (raykube_train_epochs_total)", "{{run}}"),)),
    Panel("Restarts from a checkpoint",
          (("sum by (run) (raykube_train_restarts_total)", "{{run}}"),)),
    Panel("Checkpoints", (("sum by (run) (raykube_train_checkpoints_total)", "{{run}}"),)),
    Panel("Node CPU", ((NODE_CPU, "{{instance}}"),), "percent"),
    Panel("Node memory", ((NODE_MEMORY, "{{instance}}"),), "bytes"),
    Panel("GPUs", ((RAY_GPUS, "Ray GPUs {{State}}"), (NODE_GPU_DEVICE, "{{instance}} busy %")),
          device_only=(NODE_GPU_DEVICE,)),
)

SERVING = (
    Panel("Requests per second, by version and code",
          (("sum by (service, version, code) (rate(raykube_serve_requests_total[1m]))",
            "{{service}} {{version}} {{code}}"),), "reqps"),
    Panel("Error rate (5xx), by version", ((VERSION_ERROR_RATE, "{{service}} {{version}}"),),
          "percentunit"),
    Panel("Latency p50 / p99, by version", (
        ("histogram_quantile(0.5, sum by (service, version, le) "
         "(rate(raykube_serve_request_duration_seconds_bucket[5m])))", "p50 {{version}}"),
        (VERSION_P99_S, "p99 {{version}}")), "s"),
    Panel("Retries after a lost replica",
          (("sum by (service, version) (raykube_serve_retries_total)", "{{version}}"),)),
    Panel("Live accuracy (feedback), by version",
          ((VERSION_ACCURACY, "{{service}} {{version}}"),), "percentunit"),
    Panel("Answers by class",
          (("sum by (version, prediction) (rate(raykube_serve_predictions_total[5m]))",
            "{{version}} {{prediction}}"),), "reqps"),
    Panel("Replicas running", (("sum by (application) (ray_serve_deployment_replica_healthy)",
                                "{{application}}"),)),
    Panel("Node CPU", ((NODE_CPU, "{{instance}}"),), "percent"),
    Panel("Node memory", ((NODE_MEMORY, "{{instance}}"),), "bytes"),
    Panel("GPUs", ((RAY_GPUS, "Ray GPUs {{State}}"), (NODE_GPU_DEVICE, "{{instance}} busy %")),
          device_only=(NODE_GPU_DEVICE,)),
)

DASHBOARDS = {"raykube-training": ("raykube: training", TRAINING),
              "raykube-serving": ("raykube: serving", SERVING)}
"""Dashboard uid -> (title, panels)."""


@dataclass(frozen=True)
class Alert:
    """One alert rule: it fires when ``quantity`` compared with ``threshold`` (a number or an
    expression) holds for ``for_``."""

    name: str
    quantity: str
    comparison: str
    threshold: str
    summary: str
    for_: str = "2m"
    severity: str = "warning"

    @property
    def expr(self) -> str:
        return f"({self.quantity}) {self.comparison} {self.threshold}"


ALERTS = (
    Alert("RaykubeServeErrorRate", VERSION_ERROR_RATE, ">", "0.05",
          "{{ $labels.service }} {{ $labels.version }}: over 5% of requests fail (5xx)",
          severity="critical"),
    Alert("RaykubeServeLatencyP99", VERSION_P99_S, ">", "1",
          "{{ $labels.service }} {{ $labels.version }}: p99 latency over 1 s"),
    Alert("RaykubeVersionLessAccurate", VERSION_ACCURACY, "<",
          f"on (service) group_left () (max by (service) ({VERSION_ACCURACY}) - 0.05)",
          "{{ $labels.service }} {{ $labels.version }}: live accuracy 5 points below the "
          "service's best version", for_="10m"),
    Alert("RaykubeTrainingRestarts", "sum by (run) (increase(raykube_train_restarts_total[15m]))",
          ">", "0", "training run {{ $labels.run }} restarted from a checkpoint", for_="0s"),
    Alert("RayNodeDown", 'min by (instance) (up{job=~"ray.*"})', "==", "0",
          "{{ $labels.instance }}: a Ray node's metrics agent does not answer (the node is "
          "gone, or its processes died)", for_="30s", severity="critical"),
    Alert("RayNodeLaunchFailed", "sum(increase(autoscaler_failed_create_nodes_total[10m]))",
          ">", "0", "the Ray autoscaler failed to start a node", for_="0s"),
)


def grafana_dashboard(uid: str, datasource: str = "Prometheus") -> dict[str, Any]:
    """Dashboard ``uid`` as Grafana JSON (a model Grafana imports, or its sidecar loads)."""
    title, panels = DASHBOARDS[uid]
    return {
        "uid": uid, "title": title, "schemaVersion": 39, "version": 1, "editable": True,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "10s", "tags": ["raykube", "ray"],
        "panels": [
            {"id": index + 1, "type": "timeseries", "title": panel.title,
             "datasource": {"type": "prometheus", "uid": datasource},
             "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
             "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
             "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
                         for i, (expr, legend) in enumerate(panel.queries)]}
            for index, panel in enumerate(panels)
        ],
    }


def alert_rule_groups(for_: str | None = None) -> dict[str, Any]:
    """raykube's alert rules as a Prometheus rule file (``for_`` overrides every rule's hold
    time, e.g. ``0s`` to see them fire at once in a test)."""
    return {"groups": [{"name": "raykube", "rules": [
        {"alert": a.name, "expr": a.expr, "for": for_ or a.for_,
         "labels": {"severity": a.severity}, "annotations": {"summary": a.summary}}
        for a in ALERTS]}]}
