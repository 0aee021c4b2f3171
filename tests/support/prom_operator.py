"""What the Prometheus operator makes of a PodMonitor, and Prometheus's Kubernetes pod
discovery, for a real Prometheus to scrape the test control plane's pods.

Test support, two stand-ins, named as such:

- for the operator (none runs on the test control plane): :func:`scrape_jobs` turns each
  ``podMetricsEndpoint`` of a rendered PodMonitor into the ``scrape_configs`` entry the
  operator's config generator writes: pods of the monitor's namespace kept by the selector's
  labels and the endpoint's port name, then the endpoint's relabelings and metric relabelings;
- for Prometheus's ``kubernetes_sd_configs`` (Debian's build leaves that discovery out):
  :func:`discovered_pods` lists the pods through the API server and writes what that
  discovery would (a target per container port, with its ``__meta_kubernetes_pod_*`` labels)
  as a ``file_sd`` file.

So a real Prometheus applies exactly the rendered monitor's relabelling to the real pods and
scrapes the real Ray processes in them.
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


def scrape_jobs(monitor: dict[str, Any], namespace: str, *, discovery_file: str
                ) -> list[dict[str, Any]]:
    """The operator's scrape jobs for PodMonitor ``monitor`` (its pods in ``namespace``), the
    pods discovered through ``discovery_file`` (:func:`discovered_pods`)."""
    spec = monitor["spec"]
    selector = [{"action": "keep", "source_labels": [_label(k)], "regex": re.escape(v)}
                for k, v in spec["selector"]["matchLabels"].items()]
    jobs = []
    for index, endpoint in enumerate(spec["podMetricsEndpoints"]):
        jobs.append({
            "job_name": f"podMonitor/{namespace}/{monitor['metadata']['name']}/{index}",
            "file_sd_configs": [{"files": [discovery_file], "refresh_interval": "2s"}],
            "metrics_path": endpoint.get("path", "/metrics"),
            "relabel_configs": [
                {"action": "keep", "source_labels": ["__meta_kubernetes_namespace"],
                 "regex": re.escape(namespace)},
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


def discovered_pods(pods: list[Any]) -> list[dict[str, Any]]:
    """What Prometheus's Kubernetes pod discovery reports for ``pods`` (the client's V1Pod
    objects): one target per container port, ``podIP:port``, with its meta labels."""
    found = []
    for pod in pods:
        if not pod.status.pod_ip:
            continue
        labels = {"__meta_kubernetes_namespace": pod.metadata.namespace,
                  "__meta_kubernetes_pod_name": pod.metadata.name,
                  "__meta_kubernetes_pod_ip": pod.status.pod_ip,
                  "__meta_kubernetes_pod_phase": pod.status.phase or ""}
        for key, value in (pod.metadata.labels or {}).items():
            labels[_label(key)] = value
            labels[_label(key).replace("_label_", "_labelpresent_", 1)] = "true"
        for container in pod.spec.containers:
            for port in container.ports or []:
                found.append({"targets": [f"{pod.status.pod_ip}:{port.container_port}"],
                              "labels": {**labels,
                                         "__meta_kubernetes_pod_container_name": container.name,
                                         "__meta_kubernetes_pod_container_port_name":
                                             port.name or "",
                                         "__meta_kubernetes_pod_container_port_number":
                                             str(port.container_port)}})
    return found
