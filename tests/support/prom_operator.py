"""What the Prometheus operator makes of a PodMonitor: a Prometheus scrape job with Kubernetes
service discovery against the API server.

Test support, a stand-in for the operator (none runs on the test control plane): it turns each
``podMetricsEndpoint`` of a rendered PodMonitor into the ``scrape_configs`` entry the operator's
config generator writes (pods of the monitor's namespace, kept by the selector's labels and
the endpoint's port name, the endpoint's relabelings and metric relabelings), so a real
Prometheus discovers and scrapes the pods exactly as the rendered monitor asks.
"""

from __future__ import annotations

import re
from typing import Any

_SNAKE = {"sourceLabels": "source_labels", "targetLabel": "target_label",
          "replacement": "replacement", "regex": "regex", "action": "action",
          "separator": "separator"}


def _label(key: str) -> str:
    """A Kubernetes label key as Prometheus's discovery meta label names it."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


def _relabel(rule: dict[str, Any]) -> dict[str, Any]:
    return {_SNAKE[k]: v for k, v in rule.items()}


def scrape_jobs(monitor: dict[str, Any], namespace: str, *, api_server: str, ca_file: str,
                token_file: str) -> list[dict[str, Any]]:
    """The operator's scrape jobs for PodMonitor ``monitor`` (its pods in ``namespace``)."""
    spec = monitor["spec"]
    selector = [{"action": "keep", "source_labels": [_label(k)], "regex": re.escape(v)}
                for k, v in spec["selector"]["matchLabels"].items()]
    jobs = []
    for index, endpoint in enumerate(spec["podMetricsEndpoints"]):
        jobs.append({
            "job_name": f"podMonitor/{namespace}/{monitor['metadata']['name']}/{index}",
            "kubernetes_sd_configs": [{
                "role": "pod", "api_server": api_server,
                "namespaces": {"names": [namespace]},
                "tls_config": {"ca_file": ca_file},
                "authorization": {"type": "Bearer", "credentials_file": token_file}}],
            "metrics_path": endpoint.get("path", "/metrics"),
            "relabel_configs": [
                *selector,
                {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                 "regex": re.escape(endpoint["port"])},
                {"action": "replace", "source_labels": ["__meta_kubernetes_pod_name"],
                 "target_label": "pod"},
                *(_relabel(r) for r in endpoint.get("relabelings", [])),
            ],
            "metric_relabel_configs": [_relabel(r) for r in
                                       endpoint.get("metricRelabelings", [])],
        })
    return jobs
