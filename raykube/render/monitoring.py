"""Monitoring as configuration (pure): how Prometheus scrapes a raykube cluster and what
Grafana shows of it, locally and on Kubernetes.

- Locally, :func:`prometheus_config` scrapes through the service-discovery file the head's
  dashboard keeps up to date: every node's Ray metrics agent (so nodes the autoscaler adds
  appear by themselves) and the autoscaler's and the dashboard's own metrics ports.
- On Kubernetes, :func:`render_pod_monitors` are the PodMonitors KubeRay documents (one for
  the head with its ``metrics``, ``as-metrics`` and ``dash-metrics`` ports, one for the
  workers, ``ray.io/cluster`` relabelled to ``ray_io_cluster`` as Ray's dashboards expect),
  :func:`render_service_monitor` the ServiceMonitor alternative (the head's service),
  :func:`render_prometheus_rule` raykube's alert rules, and :func:`render_grafana_dashboards`
  ConfigMaps labelled for Grafana's dashboard sidecar.

Every scrape renames ``ray_raykube_*`` to ``raykube_*`` (Ray prefixes application metrics).
"""

from __future__ import annotations

import json
from typing import Any

from raykube.render.meta import HEAD_METRICS_PORTS, metadata
from raykube.render.dashboards import DASHBOARDS, alert_rule_groups, grafana_dashboard
from raykube.specs.cluster import ClusterSpec

RENAME = {"source_labels": ["__name__"], "regex": "ray_(raykube_.*)",
          "target_label": "__name__", "replacement": "$1", "action": "replace"}
"""Ray names every application metric ``ray_<name>``: give raykube's their own names back."""

CLUSTER_RELABEL = {"sourceLabels": ["__meta_kubernetes_pod_label_ray_io_cluster"],
                   "targetLabel": "ray_io_cluster", "action": "replace"}
"""The pod's ``ray.io/cluster`` as ``ray_io_cluster``, the label Ray's Grafana dashboards
filter by (KubeRay's PodMonitor sample)."""

GRAFANA_SIDECAR_LABEL = {"grafana_dashboard": "1"}
"""The label Grafana's dashboard sidecar (kube-prometheus-stack) loads ConfigMaps by."""


def _operator_rename() -> dict[str, Any]:
    """:data:`RENAME` in the Prometheus operator's spelling."""
    return {"sourceLabels": RENAME["source_labels"], "regex": RENAME["regex"],
            "targetLabel": RENAME["target_label"], "replacement": RENAME["replacement"],
            "action": "replace"}


def prometheus_config(*, discovery_file: str, cluster: str, scrape_interval: str = "15s",
                      rule_files: list[str] | None = None) -> dict[str, Any]:
    """A Prometheus configuration for one local cluster.

    Args:
        discovery_file: the head's ``prom_metrics_service_discovery.json``: every node's
            metrics agent and the head's autoscaler and dashboard metrics, kept current by Ray.
        cluster: the cluster's name, as the ``ray_io_cluster`` label of every series.
        scrape_interval: how often Prometheus scrapes and evaluates rules.
        rule_files: alert rule files to load.
    """
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": list(rule_files or []),
        "scrape_configs": [{
            "job_name": f"ray-{cluster}",
            "file_sd_configs": [{"files": [discovery_file]}],
            "relabel_configs": [{"target_label": "ray_io_cluster", "replacement": cluster,
                                 "action": "replace"}],
            "metric_relabel_configs": [dict(RENAME)],
        }],
    }


def render_pod_monitors(spec: ClusterSpec, *, release: str = "prometheus"
                        ) -> list[dict[str, Any]]:
    """The head's and the workers' PodMonitors (KubeRay's ``config/prometheus`` shape),
    labelled ``release`` so the Prometheus operator of that Helm release picks them up."""
    def endpoint(port: str) -> dict[str, Any]:
        return {"port": port, "relabelings": [dict(CLUSTER_RELABEL)],
                "metricRelabelings": [_operator_rename()]}

    monitors = []
    for node_type, ports in (("head", list(HEAD_METRICS_PORTS)), ("worker", ["metrics"])):
        meta = metadata(f"{spec.name}-ray-{node_type}", spec.namespace)
        meta["labels"]["release"] = release
        monitors.append({
            "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": meta,
            "spec": {"jobLabel": f"ray-{node_type}",
                     "selector": {"matchLabels": {"ray.io/cluster": spec.name,
                                                  "ray.io/node-type": node_type}},
                     "podMetricsEndpoints": [endpoint(p) for p in ports]},
        })
    return monitors


def render_service_monitor(spec: ClusterSpec, *, release: str = "prometheus") -> dict[str, Any]:
    """A ServiceMonitor on the head's service (its metrics, autoscaler and dashboard ports):
    for Prometheus setups that select ServiceMonitors only. Workers have no service; the
    PodMonitors cover them."""
    meta = metadata(f"{spec.name}-ray-head", spec.namespace)
    meta["labels"]["release"] = release
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": meta,
        "spec": {"jobLabel": "ray-head",
                 "selector": {"matchLabels": {"ray.io/cluster": spec.name,
                                              "ray.io/node-type": "head"}},
                 "endpoints": [{"port": p, "relabelings": [
                     {"sourceLabels": ["__meta_kubernetes_service_label_ray_io_cluster"],
                      "targetLabel": "ray_io_cluster", "action": "replace"}],
                     "metricRelabelings": [_operator_rename()]} for p in HEAD_METRICS_PORTS]},
    }


def render_prometheus_rule(spec: ClusterSpec, *, release: str = "prometheus") -> dict[str, Any]:
    """raykube's alert rules as a PrometheusRule."""
    meta = metadata(f"{spec.name}-raykube-alerts", spec.namespace)
    meta["labels"]["release"] = release
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": meta, "spec": alert_rule_groups()}


def ray_dashboards() -> dict[str, dict[str, Any]]:
    """Ray's own Grafana dashboards for this Ray version, by uid (Ray's generator)."""
    from ray.dashboard.modules.metrics import grafana_dashboard_factory as factory

    found = {}
    for make in (factory.generate_default_grafana_dashboard,
                 factory.generate_serve_grafana_dashboard,
                 factory.generate_serve_deployment_grafana_dashboard,
                 factory.generate_train_grafana_dashboard,
                 factory.generate_data_grafana_dashboard):
        content, uid = make()
        found[uid] = json.loads(content)
    return found


def render_grafana_dashboards(spec: ClusterSpec) -> list[dict[str, Any]]:
    """ConfigMaps for Grafana's dashboard sidecar: raykube's dashboards and Ray's own."""
    boards = {uid: grafana_dashboard(uid) for uid in DASHBOARDS} | ray_dashboards()
    maps = []
    for uid, board in boards.items():
        meta = metadata(f"{spec.name}-grafana-{uid.lower()}"[:63].rstrip("-"), spec.namespace)
        meta["labels"].update(GRAFANA_SIDECAR_LABEL)
        maps.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                     "data": {f"{uid}.json": json.dumps(board, indent=1)}})
    return maps


CLUSTER_OWNER_LABEL = "raykube.io/cluster"
"""On every monitoring object: the cluster it watches (``down`` removes them by it)."""

MONITORING_KINDS = ("PodMonitor", "ServiceMonitor", "PrometheusRule", "ConfigMap")


def render_monitoring(spec: ClusterSpec) -> list[dict[str, Any]]:
    """The monitoring objects ``spec.monitoring`` asks for, each labelled with the cluster it
    watches."""
    options = spec.monitoring
    objects: list[dict[str, Any]] = []
    if options.pod_monitor:
        objects += render_pod_monitors(spec, release=options.release)
    if options.service_monitor:
        objects.append(render_service_monitor(spec, release=options.release))
    if options.alerts:
        objects.append(render_prometheus_rule(spec, release=options.release))
    if options.grafana:
        objects += render_grafana_dashboards(spec)
    for body in objects:
        body["metadata"]["labels"][CLUSTER_OWNER_LABEL] = spec.name
    return objects
