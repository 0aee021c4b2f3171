"""The embedded backend on real multi-node Ray clusters: lifecycle, autoscaling, bad states."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import yaml

import raykube
from conftest import SPECS, run_cli
from support.raylet_hold import raylet_wrapper
from raykube.backends.local.processes import find_processes, is_alive
from raykube.backends.local.processes import processes_mentioning as ray_processes_under
from raykube.backends.local.state import LocalRecord
from raykube.specs.cluster import GROUP_LABEL, load_spec, parse_spec
from raykube.waiting import wait_for

pytestmark = pytest.mark.local


def test_session_cluster_nodes_carry_their_group(local_cluster: raykube.Cluster) -> None:
    status = local_cluster.status()
    assert status.head_ready
    assert {g.name for g in status.groups} == {"cpu", "gpu"}
    head = [n for n in status.nodes if n.group == "head" and n.alive]
    assert len(head) == 1 and head[0].resources.get("CPU", 0) == 0, "head has num-cpus 0"
    # Each node advertises its group's memory (as KubeRay passes a pod's limit to --memory),
    # not the machine's, so memory-based scheduling behaves as on Kubernetes.
    assert head[0].resources["memory"] == 2 * 2**30, "the head's default 2Gi"
    if not status.group("cpu").ready:  # the autoscaler removed the idle workers (minReplicas 0)
        status = local_cluster.scale("cpu", 1, timeout=120)
    workers = [n for n in status.nodes if n.group == "cpu" and n.alive]
    assert workers and all(n.resources["memory"] == 2**30 for n in workers), "memory: 1Gi"
    assert local_cluster.dashboard_url.startswith("http://127.0.0.1:")


def test_two_clusters_lifecycle_and_nothing_left(local_cluster: raykube.Cluster,
                                                 tmp_path: Path) -> None:
    """up -> status -> scale -> down on a second cluster while the session cluster runs."""
    import ray

    fixed = raykube.up(SPECS / "fixed.yaml", timeout=180)
    record = LocalRecord.load("rk-fixed")
    assert record is not None
    try:
        assert fixed.address != local_cluster.address
        status = fixed.status()
        assert status.is_ready
        assert (status.group("small").ready, status.group("wide").ready) == (1, 1)
        wide = [n for n in status.nodes if n.group == "wide"]
        assert wide[0].resources["CPU"] == 2

        status = fixed.scale("small", 2)
        assert status.group("small").ready == 2
        status = fixed.scale("small", 0)
        assert status.group("small").ready == 0 and status.group("wide").ready == 1

        with pytest.raises(raykube.ScaleError, match="minReplicas 1 and maxReplicas 2"):
            fixed.scale("wide", 3)
        with pytest.raises(raykube.ScaleError, match="no worker group 'nope'"):
            fixed.scale("nope", 1)
        with pytest.raises(raykube.ClusterExists):
            raykube.up(SPECS / "fixed.yaml")

        listed = {s.name: s.state for s in raykube.list_clusters()}
        assert listed["rk-fixed"] == "running" and listed["rk-session"] == "running"
        live = fixed.logs(tmp_path / "live", node="worker")
        assert len(live) >= 2 and all(n.startswith("worker-") for n in live), live
        assert all((d / "raylet.out").is_file() for d in live.values()), "each node's own logs"
        assert raykube.connect(fixed).dashboard_url  # a driver of this cluster, as in a notebook
    finally:
        fixed.down()
    assert not ray.is_initialized(), "down detached this process first (else Ray ends it)"
    assert find_processes(record.marker) == []
    assert ray_processes_under(record.temp_dir) == []
    assert LocalRecord.load("rk-fixed") is None
    assert not Path(record.temp_dir).exists()
    assert local_cluster.status().head_ready, "the other cluster is untouched"
    # The logs outlive the cluster: `raykube logs` reads them after `down`, `--purge` ends them.
    kept = run_cli("logs", "rk-fixed", "--out-dir", str(tmp_path / "kept"))
    assert kept.returncode == 0, kept.stderr
    assert "head: " in kept.stdout and kept.stdout.count("worker-") >= 2
    assert (tmp_path / "kept" / "head" / "gcs_server.out").is_file()
    assert "rk-fixed" not in {s.name for s in raykube.list_clusters()}
    assert run_cli("down", "rk-fixed", "--purge").returncode == 0
    gone = run_cli("logs", "rk-fixed", "--out-dir", str(tmp_path / "gone"))
    assert gone.returncode == 3 and "neither runs nor left logs" in gone.stderr


def test_autoscaling_from_zero_to_n_and_back(ray_driver: raykube.Cluster) -> None:
    """Pending GPU work makes Ray's autoscaler add GPU workers; idle ones are removed."""
    import ray

    @ray.remote(num_cpus=0)
    class Gate:
        def __init__(self) -> None:
            import asyncio

            self.event = asyncio.Event()

        async def wait(self) -> None:
            await self.event.wait()

        def open(self) -> None:
            self.event.set()

    @ray.remote(num_gpus=1, resources={"accelerator_type:A100": 0.001})
    def gpu_task(gate: ray.actor.ActorHandle) -> str:
        ray.get(gate.wait.remote())
        return ray.get_runtime_context().get_node_id()

    cluster = ray_driver
    assert cluster.status().group("gpu").ready == 0
    gate = Gate.remote()
    tasks = [gpu_task.remote(gate) for _ in range(2)]
    wait_for(lambda: cluster.status().group("gpu").ready == 2, timeout=120,
             what="2 GPU workers added by the autoscaler")
    gate.open.remote()
    node_ids = set(ray.get(tasks, timeout=120))
    gpu_nodes = {n.node_id for n in cluster.status().nodes if n.group == "gpu" and n.alive}
    assert node_ids and node_ids <= gpu_nodes, "the GPU tasks ran on the GPU group's nodes"
    labels = {n["NodeID"]: n["Labels"] for n in ray.nodes() if n["Alive"]}
    assert all(labels[node][GROUP_LABEL] == "gpu" for node in node_ids)
    wait_for(lambda: cluster.status().group("gpu").ready == 0, timeout=120,
             what="idle GPU workers removed by the autoscaler")


def test_pinned_port_in_use_is_refused_before_start() -> None:
    spec = load_spec(SPECS / "fixed.yaml")
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec.head_group_spec.ray_start_params = {"num-cpus": "0", "dashboard-port": str(port)}
        with pytest.raises(raykube.PortInUse, match=f"port {port} for the dashboard"):
            raykube.up(spec)
    assert LocalRecord.load("rk-fixed") is None


def test_failed_up_stops_what_it_started(tmp_path: Path) -> None:
    """A group whose nodes can never start: up times out and leaves nothing behind."""
    spec = parse_spec({
        "name": "rk-broken",
        "workerGroupSpecs": [{"groupName": "g", "replicas": 1, "maxReplicas": 1,
                              "rayStartParams": {"object-store-memory": "1000"}}],
    })
    with pytest.raises(raykube.ReadyTimeout, match="group 'g' has 0 of 1 workers"):
        raykube.up(spec, timeout=25)
    assert LocalRecord.load("rk-broken") is None
    assert [s for s in raykube.list_clusters() if s.name == "rk-broken"] == []
    from raykube.backends.local.state import ray_temp_dir

    assert ray_processes_under(str(ray_temp_dir("rk-broken"))) == []
    kept = raykube.logs("rk-broken", tmp_path, node="head")
    assert (kept["head"] / "monitor.log").is_file(), "the failed start's logs are kept"


def test_head_started_again_when_its_raylet_misses_rays_wait(
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """A raylet too slow to register within Ray's fixed 30 s costs one more start, not a
    failed `up`. The slow raylet is a stand-in for one a busy machine starves: through Ray's
    own hook for wrapping the raylet (``RAY_RAYLET_VALGRIND`` runs ``valgrind ARGS raylet``),
    a ``valgrind`` on PATH that stops itself before it runs the raylet, the first time only."""
    for key, value in raylet_wrapper(tmp_path, hold="first").items():
        monkeypatch.setenv(key, value)
    flag = tmp_path / "first.pid"
    monkeypatch.setenv("RAYKUBE_QUIET", "0")
    spec = parse_spec({"name": "rk-slow-head", "workerGroupSpecs": []})
    cluster = raykube.up(spec, timeout=120)
    try:
        assert flag.exists(), "the first raylet was never started through the wrapper"
        frozen = int(flag.read_text())

        wait_for(lambda: not is_alive(frozen), timeout=30, what="the frozen raylet to stop")
        assert cluster.status().head_ready
        assert "did not register within Ray's 30 s" in capfd.readouterr().err
    finally:
        cluster.down()


def test_a_connection_to_one_cluster_is_not_used_for_another(
        ray_driver: raykube.Cluster) -> None:
    """Ray keeps one connection per process: asking for another cluster while connected must
    say so, not run the work on the first one."""
    from raykube.connection import ensure_connected

    with pytest.raises(raykube.RaykubeError,
                       match=r"connected to the cluster at \S+, not to 127.0.0.1:1"):
        ensure_connected("127.0.0.1:1")
    assert ensure_connected(ray_driver).gcs_address == ray_driver.address


def test_every_node_starts_with_serves_fast_path(ray_driver: raykube.Cluster) -> None:
    import ray

    from raykube.render.serve_config import SERVE_FAST_PATH_ENV

    @ray.remote(num_cpus=1)
    def settings() -> dict[str, str | None]:
        return {name: os.environ.get(name) for name in SERVE_FAST_PATH_ENV}

    assert ray.get(settings.remote(), timeout=120) == SERVE_FAST_PATH_ENV


def test_cli_status_list_env(local_cluster: raykube.Cluster) -> None:
    status = run_cli("status", "rk-session")
    assert status.returncode == 0, status.stderr
    assert "cluster rk-session (local): " in status.stdout and "gpu" in status.stdout
    listed = run_cli("list")
    assert "rk-session" in listed.stdout and "running" in listed.stdout
    env = run_cli("env", "rk-session").stdout
    assert f"export RAY_API_SERVER_ADDRESS={local_cluster.dashboard_url}" in env
    assert "export RAY_AUTH_MODE=token" in env
    assert "auth_token\n" in env and len(env) < 400, "points at the token, never prints it"


def test_machine_readable_output(local_cluster: raykube.Cluster) -> None:
    """-o json|yaml: the records the Python API returns, fields and plain properties."""
    status = json.loads(run_cli("status", "rk-session", "-o", "json").stdout)
    assert status["name"] == "rk-session" and status["is_ready"] is True
    assert status["endpoints"]["dashboard_url"] == local_cluster.dashboard_url
    assert {g["name"] for g in status["groups"]} >= {"cpu", "gpu"}
    listed = yaml.safe_load(run_cli("list", "-o", "yaml").stdout)
    assert {"name": "rk-session", "backend": "local", "state": "running"}.items() <= \
        next(s for s in listed if s["name"] == "rk-session").items()
    job = raykube.submit(local_cluster, "python -c \"print('hi')\"")
    job.wait(timeout=120)
    shown = json.loads(run_cli("job", "status", "--cluster", "rk-session", job.job_id,
                               "-o", "json").stdout)
    assert shown == {"job_id": job.job_id, "state": "SUCCEEDED", "message": shown["message"],
                     "entrypoint": "python -c \"print('hi')\"", "driver_exit_code": 0,
                     "metadata": {}}
    jobs = json.loads(run_cli("job", "list", "--cluster", "rk-session", "-o", "json").stdout)
    assert job.job_id in [j["job_id"] for j in jobs]
    refused = run_cli("list", "-A")
    assert refused.returncode == 2 and "--all-namespaces is for Kubernetes" in refused.stderr


COMPLETE = """source <(raykube completion bash)
complete_line() {
  COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; read -a COMP_WORDS <<< "$1"
  [[ "$1" == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]}-1)); COMPREPLY=()
  _python_argcomplete raykube; echo "${COMPREPLY[*]}"
}
complete_line "raykube sta"
complete_line "raykube status rk-se"
complete_line "raykube job list --cluster rk-sess"
complete_line "raykube serve status --o"
"""


def test_shell_completion_through_a_real_bash(local_cluster: raykube.Cluster) -> None:
    """`raykube completion bash` sourced into bash completes commands, flags and the names of
    running clusters, as the shell would on Tab."""
    import subprocess
    import sys

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", COMPLETE], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert [line.split() for line in done.stdout.splitlines()] == [
        ["status"], ["rk-session"], ["rk-session"], ["--output"]]
