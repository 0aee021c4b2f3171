"""Where a local cluster's facts live between commands: ``$RAYKUBE_HOME/clusters/<name>/``.

Each cluster gets its own folder (its record, its autoscaler config) and its own short Ray temp
dir, so several clusters run side by side and ``down`` knows exactly what to stop.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path


def raykube_home() -> Path:
    """``$RAYKUBE_HOME``, default ``~/.raykube``."""
    return Path(os.environ.get("RAYKUBE_HOME") or Path.home() / ".raykube")


def clusters_dir() -> Path:
    """The folder holding one sub-folder per local cluster."""
    return raykube_home() / "clusters"


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

    @property
    def folder(self) -> Path:
        """This cluster's state folder."""
        return clusters_dir() / self.name

    @property
    def autoscaler_config_path(self) -> Path:
        """The config Ray's autoscaler re-reads on every update."""
        return self.folder / "autoscaler.yaml"

    def save(self) -> None:
        """Write the record atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / "cluster.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(self.folder / "cluster.json")

    @classmethod
    def load(cls, name: str) -> LocalRecord | None:
        """The record of ``name``, or None when there is none."""
        path = clusters_dir() / name / "cluster.json"
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        data["ports"] = Ports(**data["ports"])
        return cls(**data)

    def remove(self) -> None:
        """Delete the state folder and the Ray temp dir."""
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def known_names() -> list[str]:
    """Names of every local cluster with a record, sorted."""
    root = clusters_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "cluster.json").is_file())
