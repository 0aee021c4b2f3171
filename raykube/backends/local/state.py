"""Where a local cluster's facts live between commands: ``$RAYKUBE_HOME/clusters/<name>/``.

Each cluster gets its own folder (its record, its autoscaler config) and its own short Ray temp
dir, so several clusters run side by side and ``down`` knows exactly what to stop.

The state is private to the user (folders 0700, files 0600): it names the token file and the
ports of clusters that run that user's code. A name is a Kubernetes name before it becomes a
path, and a record is checked when it is read (a hand-edited or corrupt one is reported, never
followed): nothing outside raykube's own folders is read or deleted because a record says so.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from raykube.errors import BackendError, SpecError
from raykube.private import make_private_dir, raykube_home, write_private
from raykube.specs.base import check_dns_label


def clusters_dir() -> Path:
    """The folder holding one sub-folder per local cluster."""
    return raykube_home() / "clusters"


def private_dir(folder: Path) -> Path:
    """``folder`` (and raykube's folders above it) created 0700, for this user only."""
    for part in (raykube_home(), clusters_dir(), folder):
        make_private_dir(part)
    return folder


def storage_dir(name: str) -> Path:
    """Where local cluster ``name`` keeps checkpoints when its spec names no storage path:
    ``$RAYKUBE_HOME/storage/<name>``, private to this user."""
    for part in (raykube_home(), raykube_home() / "storage"):
        make_private_dir(part)
    return make_private_dir(raykube_home() / "storage" / name)


def cluster_folder(name: str) -> Path:
    """The state folder of cluster ``name``.

    Raises:
        SpecError: ``name`` is not a cluster name (a path, ``..``, spaces), so it cannot
            escape raykube's folder.
    """
    try:
        check_dns_label(name, "cluster name")
    except ValueError as exc:
        raise SpecError(str(exc), "`raykube list` shows the clusters raykube knows") from None
    return clusters_dir() / name


def ray_temp_dir(name: str) -> Path:
    """A short Ray temp dir for ``name``: Unix socket paths under it must stay < 108 bytes."""
    digest = hashlib.sha1(f"{raykube_home()}:{name}".encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"rk-{digest}"


@dataclass
class Ports:
    """The head's ports, picked free at ``up`` unless the spec's rayStartParams pin them."""

    gcs: int
    dashboard: int
    client: int
    dashboard_agent: int
    metrics: int
    serve: int
    autoscaler_metrics: int
    """The autoscaler's metrics port (Ray's AUTOSCALER_METRIC_PORT, whose fixed default would
    collide between two clusters)."""
    dashboard_metrics: int
    """The dashboard's metrics port (Ray's DASHBOARD_METRIC_PORT, likewise)."""
    serve_workers: int
    """Where the workers' Serve proxies listen on a cluster that survives head loss (clients
    use it; the head's proxy keeps ``serve``): see ``Endpoints.serve_head_port``."""


@dataclass
class LocalRecord:
    """Everything ``status``, ``scale`` and ``down`` need to find a running local cluster."""

    name: str
    marker: str
    node_ip: str
    ports: Ports
    temp_dir: str
    token_path: str
    spec_yaml: str
    targets: dict[str, int | None]
    """Per worker group, the replica count raykube is driving it to (``up``, ``scale``), or
    None while Ray's autoscaler owns the count within the group's bounds."""
    head_node_id: str
    """The Ray node id of the head as it runs now (new each time it starts, see
    :data:`~raykube.backends.local.processes.HEAD_NODE_ID_PREFIX`)."""

    @property
    def folder(self) -> Path:
        """This cluster's state folder."""
        return cluster_folder(self.name)

    @property
    def nodes_dir(self) -> Path:
        """Where each worker node keeps its own temp folder (see :func:`nodes_dir`)."""
        return nodes_dir(self.name)

    @property
    def autoscaler_config_path(self) -> Path:
        """The config Ray's autoscaler re-reads on every update."""
        return self.folder / "autoscaler.yaml"

    @property
    def survives_head_loss(self) -> bool:
        """Whether the cluster runs with GCS fault tolerance (its spec names a Redis)."""
        return "gcsFaultToleranceOptions" in (yaml.safe_load(self.spec_yaml) or {})

    def save(self) -> None:
        """Write the record atomically, private to this user."""
        write_private(private_dir(self.folder) / "cluster.json", json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, name: str) -> LocalRecord | None:
        """The record of ``name``, or None when there is none.

        Raises:
            SpecError: ``name`` is not a cluster name.
            BackendError: the record is unreadable or does not hold what raykube wrote.
        """
        path = cluster_folder(name) / "cluster.json"
        if not path.is_file():
            return None
        try:
            return cls._checked(name, json.loads(path.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise BackendError(
                f"the state of local cluster {name!r} ({path}) is unreadable: "
                f"{str(exc)[:200]}",
                f"`raykube down {name}` removes that state",
            ) from None

    @classmethod
    def _checked(cls, name: str, data: Any) -> LocalRecord:
        """A record from its JSON, every field of the type raykube writes; its paths are the
        ones raykube derives for ``name`` (a record naming another folder is corrupt)."""
        if not isinstance(data, dict) or set(data) != {f.name for f in fields(cls)}:
            raise ValueError("its fields are not those of a raykube record")
        ports = data["ports"]
        if not isinstance(ports, dict) or not all(
                isinstance(p, int) and 0 < p < 65536 for p in ports.values()):
            raise ValueError("its ports are not port numbers")
        record = cls(**{**data, "ports": Ports(**ports)})
        texts = (record.name, record.marker, record.node_ip, record.temp_dir, record.token_path,
                 record.spec_yaml, record.head_node_id)
        if not all(isinstance(t, str) for t in texts) or not isinstance(record.targets, dict):
            raise ValueError("its fields are not of the types raykube writes")
        if record.name != name or record.temp_dir != str(ray_temp_dir(name)):
            raise ValueError("it names another cluster's folders")
        if not record.marker.startswith(f"{name}-"):
            raise ValueError("its process marker is not this cluster's")
        return record

    def remove(self) -> None:
        """Delete the record and the Ray temp dir, keeping the cluster's logs
        (:func:`kept_logs_dir`)."""
        remove_state(self.name)


def nodes_dir(name: str) -> Path:
    """Where each worker node of cluster ``name`` keeps its own temp folder (sessions, logs,
    sockets), as each pod has its own ``/tmp/ray``; the head's is the Ray temp dir itself."""
    return ray_temp_dir(name) / "nodes"


def kept_logs_dir(name: str) -> Path:
    """Where the logs of cluster ``name``'s past sessions are kept after ``down`` (and after a
    failed ``up``): ``<state folder>/logs/<session>/<node>``, until ``down --purge``."""
    return cluster_folder(name) / "logs"


def live_log_dirs(name: str) -> dict[str, Path]:
    """Each node's log folder of cluster ``name``'s current session, by node: ``head``, and
    ``worker-<n>`` for each worker node (each has a temp folder of its own)."""
    found = {"head": ray_temp_dir(name) / "session_latest" / "logs"}
    nodes = nodes_dir(name)
    if nodes.is_dir():
        for node in sorted(nodes.iterdir()):
            found[f"worker-{node.name}"] = node / "session_latest" / "logs"
    return {node: folder for node, folder in found.items() if folder.is_dir()}


def kept_metrics_dir(name: str) -> Path:
    """Where the Grafana dashboards (and Prometheus config) Ray generated for cluster
    ``name``'s past sessions are kept after ``down``: ``<state folder>/metrics/<session>``."""
    return cluster_folder(name) / "metrics"


def live_metrics_dir(name: str) -> Path:
    """The current session's ``metrics`` folder, where the head's dashboard writes Grafana
    dashboards and a Prometheus config for this Ray version."""
    return ray_temp_dir(name) / "session_latest" / "metrics"


def _keep_logs(name: str) -> None:
    """Move the current session's logs and generated dashboards out of the Ray temp dir,
    which ``down`` deletes."""
    live = live_log_dirs(name)
    if not live:
        return
    session = live["head"].resolve().parent.name if "head" in live else "session"
    target = make_private_dir(make_private_dir(kept_logs_dir(name)) / session)
    for node, folder in live.items():
        shutil.move(str(folder.resolve()), str(target / node))
    metrics = live_metrics_dir(name)
    if metrics.is_dir():
        shutil.move(str(metrics.resolve()),
                    str(make_private_dir(kept_metrics_dir(name)) / session))


def remove_state(name: str, *, purge: bool = False) -> None:
    """Delete cluster ``name``'s record and Ray temp dir (paths derived from the name); its
    logs and generated dashboards are kept unless ``purge``."""
    folder = cluster_folder(name)
    if purge:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        try:
            _keep_logs(name)
        except OSError:
            pass  # logs are kept where possible; the cluster still goes
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.name not in ("logs", "metrics"):
                    if entry.is_dir():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
    shutil.rmtree(ray_temp_dir(name), ignore_errors=True)


def known_names() -> list[str]:
    """Names of every local cluster with a record, sorted (folders that are not a cluster name
    are not raykube's and are left alone)."""
    root = clusters_dir()
    if not root.is_dir():
        return []
    names = []
    for folder in root.iterdir():
        try:
            cluster_folder(folder.name)
        except SpecError:
            continue
        if (folder / "cluster.json").is_file():
            names.append(folder.name)
    return sorted(names)
