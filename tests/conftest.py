"""Shared fixtures: an isolated raykube home, one local cluster per session, and helpers.

Test tiers are markers (see pyproject.toml): ``unit`` needs no cluster; ``local`` shares the
session cluster ``rk-session``; tests that kill nodes or need other shapes start their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = Path(__file__).resolve().parent / "specs"


@pytest.fixture(scope="session", autouse=True)
def raykube_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test runs against its own RAYKUBE_HOME, so user clusters are never touched."""
    home = tmp_path_factory.mktemp("raykube-home")
    previous = os.environ.get("RAYKUBE_HOME")
    os.environ["RAYKUBE_HOME"] = str(home)
    os.environ["RAYKUBE_QUIET"] = "1"
    # Ray Train's controller drains each worker's one-slot report queue once per health check
    # (every 2 s by default), so every epoch's report after the first waited ~2 s. Tests train
    # many short epochs: poll faster. Ray propagates this from the driver to the controller,
    # and the local clusters started here pass it on to job drivers.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    yield home
    # Safety net: stop anything a failed test left running.
    from raykube.backends.local import LocalBackend
    from raykube.backends.local.state import known_names

    for name in known_names():
        LocalBackend().down(name)
    if previous is None:
        os.environ.pop("RAYKUBE_HOME", None)
    else:
        os.environ["RAYKUBE_HOME"] = previous


@pytest.fixture(scope="session")
def session_spec(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The session cluster's spec, with its storage in a temporary folder."""
    from raykube.specs.cluster import StorageSpec, load_spec

    spec = load_spec(SPECS / "session.yaml")
    spec.storage = StorageSpec(path=str(tmp_path_factory.mktemp("storage")))
    return spec


@pytest.fixture(scope="session")
def local_cluster(session_spec):  # type: ignore[no-untyped-def]
    """One real multi-node local cluster shared by every ``local`` test."""
    import raykube

    cluster = raykube.up(session_spec, timeout=180)
    yield cluster
    cluster.down()


@pytest.fixture()
def ray_driver(local_cluster):  # type: ignore[no-untyped-def]
    """This test process connected to the session cluster as a Ray driver."""
    import ray

    from raykube.connection import ensure_connected

    ensure_connected(local_cluster)
    yield local_cluster
    ray.shutdown()


def run_cli(*args: str, timeout: float = 300, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run the real ``raykube`` CLI of this environment."""
    return subprocess.run(
        [sys.executable, "-m", "raykube.cli", *args], capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT, stdin=subprocess.DEVNULL,
    )


def assert_each_epoch_said_once(output: str, epochs: int) -> None:
    """A run's output says each epoch's report exactly once, and none of Ray Train's own
    per-report lines (README: Distributed training, Output)."""
    for epoch in range(epochs):
        said = [line for line in output.splitlines() if f"epoch={epoch}, loss=" in line]
        assert len(said) == 1, (epoch, said, output[-3000:])
    assert "Reporting training result" not in output


def assert_clean_error(result, code: int, *words: str) -> None:  # type: ignore[no-untyped-def]
    """The CLI refused: exit ``code``, ``error:`` and ``hint:`` on stderr holding ``words``, no
    traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    assert "\nhint: " in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real Kubernetes control plane with the KubeRay operator (../shared/k8s), for the session,
    and the pod runner that runs its pods' processes (Ray in KubeRay's pods).

    Skips with a reason where the harness is absent. Yields the environment kube-up exported.
    """
    from support.kube_dev import available, control_plane

    reason = available()
    if reason:
        pytest.skip(reason)
    previous = os.environ.get("KUBECONFIG")
    with control_plane(tmp_path_factory.mktemp("k8s-state")) as exported:
        os.environ["KUBECONFIG"] = exported["KUBECONFIG"]
        try:
            yield exported
        finally:
            if previous is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = previous


@pytest.fixture()
def namespace(kube: dict[str, str], request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    import re

    from kubernetes import client

    name = make_namespace(re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-"))
    yield name
    client.CoreV1Api().delete_namespace(name)


def provide_volume(namespace: str, claim: str, path: Path | None = None) -> Path:
    """A PersistentVolume pre-bound to ``claim`` (what a storage provisioner would supply),
    backed by a host folder that the pod runner mounts into the pods; returns that folder."""
    from kubernetes import client

    folder = path or Path(f"/tmp/pv-{namespace}")
    folder.mkdir(parents=True, exist_ok=True)
    client.CoreV1Api().create_persistent_volume({
        "metadata": {"name": f"pv-{namespace}-{claim}"},
        "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
            "storageClassName": "", "hostPath": {"path": str(folder)},
            "claimRef": {"namespace": namespace, "name": claim},
        },
    })
    return folder


def make_namespace(name: str) -> str:
    """Create namespace ``name`` plus a random suffix; return its name."""
    from kubernetes import client, config

    # The file named now: the client fixes its default path when `kubernetes` is first
    # imported, which parsing a spec's quantities may have done before KUBECONFIG was set.
    config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    full = f"{name}-{os.urandom(2).hex()}"
    client.CoreV1Api().create_namespace({"metadata": {"name": full}})
    return full


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def registered_epoch(storage: str | Path, name: str) -> int | None:
    """Epoch of the latest checkpoint Ray Train has registered for run ``name`` (folders can be
    on storage before the controller registers them; only registered ones are resumed from)."""
    import json

    snapshot = Path(storage) / name / "checkpoint_manager_snapshot.json"
    try:
        latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result")
    except (OSError, ValueError):
        return None
    return int(latest["metrics"]["epoch"]) if latest else None
