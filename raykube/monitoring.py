"""``raykube metrics``: what a Prometheus and a Grafana need to watch a local cluster.

:func:`write_monitoring` writes, into one folder, a Prometheus configuration that scrapes the
cluster (every node's Ray metrics agent through Ray's service-discovery file, so nodes the
autoscaler adds appear by themselves, and the head's autoscaler and dashboard metrics),
raykube's alert rules beside it, raykube's Grafana dashboards, and the dashboards Ray generated
for this Ray version. On Kubernetes the same rules and dashboards come as a PrometheusRule and
ConfigMaps (``monitoring:`` in the cluster spec; :mod:`raykube.render.monitoring`).

Example::

    files = raykube.write_monitoring("local", "monitoring/")
    # prometheus --config.file=monitoring/prometheus.yml
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from raykube.render.dashboards import DASHBOARDS, alert_rule_groups, grafana_dashboard
from raykube.render.monitoring import prometheus_config
from raykube.target import ClusterRef, resolve

RULES_FILE = "raykube-alerts.yml"
CONFIG_FILE = "prometheus.yml"


@dataclass(frozen=True)
class MonitoringFiles:
    """What :func:`write_monitoring` wrote."""

    config: Path
    rules: Path
    dashboards: list[Path]
    ray_dashboards: list[Path]


def prometheus_yaml(cluster: ClusterRef = None, *, scrape_interval: str = "15s",
                    rule_files: list[str] | None = None) -> str:
    """The Prometheus configuration that scrapes ``cluster`` (a running local cluster).

    Raises:
        ClusterNotFound: no such cluster; SpecError: a KubeRay cluster (monitors instead).
    """
    handle = resolve(cluster).known("a scrape configuration")
    targets = handle.backend.scrape_targets(handle.name)
    return yaml.safe_dump(prometheus_config(
        discovery_file=targets.discovery_file, cluster=handle.name,
        scrape_interval=scrape_interval, rule_files=rule_files), sort_keys=False)


def write_monitoring(cluster: ClusterRef, out_dir: str | Path, *, scrape_interval: str = "15s",
                     alert_for: str | None = None) -> MonitoringFiles:
    """Write the scrape configuration, alert rules and dashboards for ``cluster`` into
    ``out_dir`` (created if needed); ``alert_for`` overrides how long each alert's condition
    must hold (e.g. ``0s``).

    Raises:
        ClusterNotFound: no such cluster; SpecError: a KubeRay cluster (monitors instead).
    """
    handle = resolve(cluster).known("a scrape configuration")
    targets = handle.backend.scrape_targets(handle.name)
    out = Path(out_dir)
    (out / "dashboards" / "ray").mkdir(parents=True, exist_ok=True)
    rules = out / RULES_FILE
    rules.write_text(yaml.safe_dump(alert_rule_groups(alert_for), sort_keys=False))
    config = out / CONFIG_FILE
    config.write_text(prometheus_yaml(handle, scrape_interval=scrape_interval,
                                      rule_files=[str(rules.resolve())]))
    dashboards = []
    for uid in DASHBOARDS:
        path = out / "dashboards" / f"{uid}.json"
        path.write_text(json.dumps(grafana_dashboard(uid), indent=1))
        dashboards.append(path)
    ray_dashboards = []
    for board in sorted(Path(targets.ray_dashboards).glob("*.json")):
        ray_dashboards.append(Path(shutil.copy(board, out / "dashboards" / "ray" / board.name)))
    return MonitoringFiles(config, rules, dashboards, ray_dashboards)
