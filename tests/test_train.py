"""raykube.train on the session cluster: real frameworks, real data, real failures."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import raykube
from conftest import ROOT, SPECS, registered_epoch
from raykube.errors import TrainError
from raykube.specs.cluster import load_spec, parse_spec
from raykube.training.api import Resources, check_request
from raykube.waiting import wait_for

sys.path.insert(0, str(ROOT / "jobs"))

import train_torch  # noqa: E402

ACCURACY_BAR = 0.90


def run_torch(cluster: raykube.Cluster, **kwargs: Any) -> raykube.TrainResult:
    config = {"lr": 0.01, "batch_size": 32, "epochs": 8, **kwargs.pop("config", {})}
    return raykube.train(train_torch.train_loop, framework="torch", cluster=cluster,
                         config=config, **kwargs)


@pytest.mark.local
def test_torch_two_workers_learn_in_sync(local_cluster: raykube.Cluster) -> None:
    two = run_torch(local_cluster, num_workers=2)
    assert two.return_value["world_size"] == 2
    assert two.return_value["test_accuracy"] >= ACCURACY_BAR
    assert len(set(two.return_value["fingerprints"])) == 1, "DDP replicas are identical"
    assert two.metrics["epoch"] == 7 and Path(two.checkpoint).is_dir()
    assert two.state()["epoch"] == 7
    # The synchronised run learns what one worker learns from the whole training set.
    one = run_torch(local_cluster, num_workers=1)
    assert one.return_value["test_accuracy"] >= ACCURACY_BAR
    assert abs(one.return_value["test_accuracy"] - two.return_value["test_accuracy"]) <= 0.03


@pytest.mark.local
def test_tensorflow_two_workers_learn_in_sync(local_cluster: raykube.Cluster) -> None:
    pytest.importorskip("tensorflow")
    import train_tensorflow

    result = raykube.train(
        train_tensorflow.train_loop, framework="tensorflow", cluster=local_cluster,
        num_workers=2, config={"batch_size": 16, "epochs": 6},
    )
    assert result.return_value["world_size"] == 2
    assert result.return_value["test_accuracy"] >= ACCURACY_BAR
    assert len(set(result.return_value["fingerprints"])) == 1, "mirrored variables agree"
    assert result.state()["epoch"] == 5


@pytest.mark.local
def test_gpu_request_lands_on_the_gpu_group(local_cluster: raykube.Cluster) -> None:
    result = run_torch(local_cluster, num_workers=2, gpus_per_worker=1, accelerator_type="A100",
                       config={"epochs": 2})
    gpu_nodes = {n.node_id for n in local_cluster.status().nodes if n.group == "gpu"}
    assert set(result.return_value["nodes"]) <= gpu_nodes
    assert len(set(result.return_value["nodes"])) == 2, "one 1-GPU worker per GPU node"


@pytest.mark.local
def test_worker_group_placement(local_cluster: raykube.Cluster) -> None:
    result = run_torch(local_cluster, num_workers=1, worker_group="cpu", config={"epochs": 1})
    cpu_nodes = {n.node_id for n in local_cluster.status().nodes if n.group == "cpu"}
    assert set(result.return_value["nodes"]) <= cpu_nodes


def _train_in_thread(**kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = run_torch(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def train_and_kill(cluster: raykube.Cluster, name: str,
                   kill: Callable[[Any], None]) -> tuple[raykube.TrainResult, int]:
    """Train 12 epochs under ``name``; once Ray has registered the checkpoint of epoch 2, call
    ``kill`` with a live training worker (Ray's actor state); return the finished run's result
    and the epoch registered before the kill."""
    from ray.util.state import list_actors

    storage = cluster.backend.spec_of(cluster.name).storage.path
    thread, outcome = _train_in_thread(
        cluster=cluster, num_workers=2, name=name, max_failures=3,
        config={"epochs": 12, "epoch_delay_s": 1.0},
    )
    wait_for(lambda: (registered_epoch(storage, name) or 0) >= 2, timeout=180,
             what="a registered checkpoint of epoch 2 before the kill")
    before_kill = registered_epoch(storage, name)
    assert before_kill is not None
    workers = list_actors(filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
                          detail=True)
    assert workers
    kill(workers[-1])
    thread.join(timeout=400)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.return_value["started_at_epoch"] >= before_kill + 1, (
        "resumed from the latest registered checkpoint, not restarted from epoch 0"
    )
    assert result.metrics["epoch"] == 11
    assert result.return_value["test_accuracy"] >= ACCURACY_BAR
    return result, before_kill


@pytest.mark.local
def test_killed_worker_resumes_from_latest_checkpoint(ray_driver: raykube.Cluster) -> None:
    train_and_kill(ray_driver, "killed-worker", lambda actor: os.kill(actor.pid, signal.SIGKILL))


@pytest.mark.local
def test_run_resumes_from_its_storage(local_cluster: raykube.Cluster,
                                      capfd: pytest.CaptureFixture[str]) -> None:
    first = run_torch(local_cluster, num_workers=2, name="resumable", config={"epochs": 3})
    assert first.return_value["started_at_epoch"] == 0
    again = run_torch(local_cluster, num_workers=2, name="resumable", config={"epochs": 5})
    assert again.return_value["started_at_epoch"] == 3
    assert again.metrics["epoch"] == 4
    # The latest checkpoint cut short (a kill or a full disk mid-write): the next start goes
    # back to the one before it, and says so, instead of failing or starting from nothing.
    assert again.checkpoint is not None
    arrays = Path(again.checkpoint) / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[:100])
    capfd.readouterr()
    third = run_torch(local_cluster, num_workers=2, name="resumable", config={"epochs": 6})
    assert third.return_value["started_at_epoch"] == 4, "resumed from epoch 3's checkpoint"
    said: list[str] = []
    wait_for(lambda: said.append(capfd.readouterr().err) or "cannot be read" in "".join(said),
             timeout=30, what="the message that the latest checkpoint was skipped")
    assert again.checkpoint in "".join(said)


@pytest.mark.local
def test_elastic_training_grows_with_the_autoscaler(local_cluster: raykube.Cluster,
                                                    tmp_path: Path) -> None:
    """Elastic training starts on what is there and grows as the autoscaler adds nodes. A
    cluster of its own keeps one cpu worker (minReplicas 1) and may add two: the run starts
    with one worker, asks for three, and at a resize check after the new nodes joined it
    restarts with three from its latest checkpoint.

    Ray Train considers a resize ``elastic_resize_monitor_interval_s`` after the worker group
    started, which is before the workers have imported torch and written a checkpoint. The
    autoscaler adds the two nodes in ~4 s, so at 2 s a loaded machine resized before the first
    checkpoint (a CI run restarted at epoch 0). At 12 s the one-worker group has written
    checkpoints first, and its 60 epochs (30 s of epoch delay alone) outlast the check.

    The session cluster stays up beside it (``local_cluster``), so Ray code inside this one
    that looks for its own State API (Train's placement-group cleaner) finds two clusters on
    the machine: it must still reach its own."""
    spec = parse_spec({
        "name": "rk-elastic", "storage": {"path": str(tmp_path / "storage")},
        "headGroupSpec": {"rayStartParams": {"num-cpus": "0"}},
        "workerGroupSpecs": [{"groupName": "cpu", "replicas": 1, "minReplicas": 1,
                              "maxReplicas": 3, "cpu": 1, "memory": "1Gi"}],
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"idleTimeoutSeconds": 60},
    })
    import ray

    @ray.remote(num_cpus=0)
    def state_api_nodes() -> set[str]:
        """The live nodes the State API shows a task that names no address."""
        from ray.util.state import list_nodes

        return {node.node_id for node in list_nodes() if node.state == "ALIVE"}

    ray.shutdown()  # earlier tests left this process connected to the session cluster
    cluster = raykube.up(spec, timeout=180)
    try:
        result = run_torch(cluster, num_workers=(1, 3), name="elastic",
                           elastic_resize_monitor_interval_s=12,
                           config={"epochs": 60, "epoch_delay_s": 0.5}).return_value
        alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
        assert ray.get(state_api_nodes.remote()) == alive, "its own State API, not another"
    finally:
        ray.shutdown()  # this process drove the run: leave before the cluster goes
        cluster.down()
    assert result["world_size"] == 3, "grew to the max as nodes were added"
    assert result["started_at_epoch"] > 0, "resized from a checkpoint"
    assert len(set(result["fingerprints"])) == 1


# ---- bad input ---------------------------------------------------------------------------


@pytest.mark.unit
def test_capacity_and_gpu_checks_are_made_before_start() -> None:
    fixed = load_spec(SPECS / "fixed.yaml")  # small: 0..2 x 1 CPU, wide: 1..2 x 2 CPU
    check_request(fixed, Resources(cpus=1), 6)
    with pytest.raises(TrainError, match="can hold at most 6 even at maxReplicas"):
        check_request(fixed, Resources(cpus=1), 7)
    with pytest.raises(TrainError, match="no GPU worker group") as caught:
        check_request(fixed, Resources(cpus=1, gpus=1), 1)
    assert "clusters/gpu.yaml" in caught.value.hint
    with pytest.raises(TrainError, match="no worker group 'gpu'"):
        check_request(fixed, Resources(worker_group="gpu"), 1)


@pytest.mark.unit
def test_unknown_framework_is_refused() -> None:
    with pytest.raises(TrainError, match="unknown framework 'jax'") as caught:
        raykube.train(lambda: None, framework="jax")
    assert "torch, tensorflow, mxnet" in caught.value.hint


@pytest.mark.local
def test_too_many_workers_refused(local_cluster: raykube.Cluster) -> None:
    with pytest.raises(TrainError, match="needs 9 workers .* at most 3"):
        run_torch(local_cluster, num_workers=9)


@pytest.mark.local
def test_unwritable_storage_refused(local_cluster: raykube.Cluster) -> None:
    with pytest.raises(TrainError, match="storage path '/proc/raykube' cannot be written"):
        run_torch(local_cluster, num_workers=1, storage_path="/proc/raykube")


def failing_loop(config: dict[str, Any]) -> None:
    raise ValueError("bad learning rate: -1")


@pytest.mark.local
def test_failing_training_function_reports_its_traceback(ray_driver: raykube.Cluster) -> None:
    from ray.util.state import list_actors

    with pytest.raises(TrainError) as caught:
        raykube.train(failing_loop, framework="torch", cluster=ray_driver, num_workers=2)
    assert "ValueError: bad learning rate: -1" in caught.value.message
    assert "failing_loop" in caught.value.message, "the user's own frame is shown"

    def leftovers() -> list[Any]:
        return [a for a in list_actors(filters=[("state", "=", "ALIVE")])
                if a.class_name in ("RayTrainWorker", "TrainController")]

    wait_for(lambda: not leftovers(), timeout=60, what="training actors to be cleaned up")


MXNET_PYTHON = ROOT / ".venv-mxnet" / "bin" / "python"


@pytest.mark.local
@pytest.mark.skipif(not MXNET_PYTHON.exists(),
                    reason="no .venv-mxnet: create it with `bash scripts/setup-mxnet.sh`")
def test_mxnet_two_workers_learn_in_sync(local_cluster: raykube.Cluster,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import train_mxnet

    monkeypatch.setenv("RAYKUBE_MXNET_PYTHON", str(MXNET_PYTHON))
    result = raykube.train(
        train_mxnet.train_loop, framework="mxnet", cluster=local_cluster, num_workers=2,
        config={"lr": 0.01, "batch_size": 32, "epochs": 8},
    )
    assert result.return_value["world_size"] == 2
    assert result.return_value["test_accuracy"] >= ACCURACY_BAR
    assert len(set(result.return_value["fingerprints"])) == 1, "workers pulled the same weights"
    assert result.state()["epoch"] == 7


@pytest.mark.unit
def test_missing_mxnet_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from raykube.frameworks.mxnet import mxnet_python

    monkeypatch.setenv("RAYKUBE_MXNET_PYTHON", "/nowhere/bin/python")
    with pytest.raises(TrainError, match="/nowhere/bin/python does not exist") as caught:
        mxnet_python()
    assert "scripts/setup-mxnet.sh" in caught.value.hint


@pytest.mark.local
def test_train_command(local_cluster: raykube.Cluster) -> None:
    import json

    from conftest import assert_each_epoch_said_once, run_cli

    result = run_cli("train", "jobs/train_torch.py:train_loop", "--cluster", local_cluster.name,
                     "--workers", "2", "--config",
                     json.dumps({"lr": 0.01, "batch_size": 32, "epochs": 3}),
                     env={"RAYKUBE_QUIET": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert_each_epoch_said_once(result.stderr, 3)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["metrics"]["epoch"] == 2 and summary["metrics"]["test_accuracy"] >= 0.9
    assert Path(summary["checkpoint"]).is_dir()


@pytest.mark.local
def test_killed_worker_node_resumes_on_another(ray_driver: raykube.Cluster) -> None:
    """A whole node (its raylet and every process on it) dies mid-run: Ray Train restarts the
    group on the nodes the autoscaler provides and resumes after the latest checkpoint."""
    from raykube.backends.local.processes import find_node_processes
    from raykube.backends.local.state import LocalRecord

    record = LocalRecord.load(ray_driver.name)
    assert record is not None
    killed: list[str] = []

    def kill_node(actor: Any) -> None:
        pids = find_node_processes(record.marker, actor.node_id)
        assert pids, "found the node's processes"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        killed.append(actor.node_id)

    result, _ = train_and_kill(ray_driver, "killed-node", kill_node)
    assert killed[0] not in result.return_value["nodes"], "finished on other nodes"


def metrics_only_loop() -> str:
    """Reports metrics and never a checkpoint, as a notebook loop written from the README may."""
    from raykube import worker

    for epoch in range(2):
        worker.report({"epoch": epoch, "accuracy": 0.5 + epoch / 4})
    return "done"


@pytest.mark.local
@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_metrics_reported_without_a_checkpoint_are_the_result(
        local_cluster: raykube.Cluster, framework: str) -> None:
    result = raykube.train(metrics_only_loop, framework=framework, cluster=local_cluster,
                           num_workers=1, name=f"metrics-only-{framework}")
    assert result.metrics == {"epoch": 1, "accuracy": 0.75}
    assert result.return_value == "done" and result.checkpoint is None
