"""Ctrl-C (SIGINT) and SIGTERM (a CI runner cancelling a step) during long commands: each one
stops what it started, and `list`, `job status` and `serve status` tell the truth afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import raykube
from conftest import ROOT, run_cli
from support.raylet_hold import raylet_wrapper
from raykube.backends.local.processes import processes_mentioning
from raykube.backends.local.state import LocalRecord, ray_temp_dir
from raykube.dashboard import DashboardClient
from raykube.submission.jobs import JobState, get_job
from raykube.waiting import wait_for

pytestmark = pytest.mark.local

PREDICTORS = Path(__file__).resolve().parent / "predictors"


class RunningCli:
    """A raykube command running in the background, its stderr collected as it comes."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "raykube.cli", *args], cwd=ROOT, text=True,
            env={**os.environ, "RAYKUBE_QUIET": "0", **(env or {})}, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.err: list[str] = []
        self.out: list[str] = []
        for stream, into in ((self.process.stderr, self.err), (self.process.stdout, self.out)):
            threading.Thread(target=lambda s=stream, i=into: i.extend(iter(s.readline, "")),
                             daemon=True).start()

    def wait_for_output(self, text: str, timeout: float = 180) -> None:
        wait_for(lambda: text in "".join(self.err + self.out) or self.process.poll() is not None,
                 timeout=timeout, what=f"{text!r} in the command's output")
        assert self.process.poll() is None, "".join(self.err)[-3000:]

    def stop_with(self, signum: int, timeout: float = 120) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=timeout)


def test_sigterm_during_up_stops_what_it_started(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps({"name": "rk-cut", "workerGroupSpecs": [
        {"groupName": "g", "replicas": 1, "maxReplicas": 1, "cpu": 1}]}))
    # The head runs; its worker's raylet is held on its way (stopped before it starts), so the
    # signal lands while `up` waits for it, every time.
    up = RunningCli("up", str(spec), env=raylet_wrapper(tmp_path, hold="later"))
    up.wait_for_output("workers joined: g 0/1")
    assert up.stop_with(signal.SIGTERM) == 143
    assert "terminated" in "".join(up.err)
    assert LocalRecord.load("rk-cut") is None
    assert processes_mentioning(str(ray_temp_dir("rk-cut"))) == []
    assert "rk-cut" not in run_cli("list").stdout
    assert raykube.logs("rk-cut", tmp_path / "logs", node="head"), "its logs are kept"


def test_ctrl_c_during_job_submit_stops_the_job(local_cluster: raykube.Cluster,
                                                tmp_path: Path) -> None:
    (tmp_path / "wait.py").write_text(
        "import time\nprint('job-started', flush=True)\ntime.sleep(600)\n")
    submit = RunningCli("job", "submit", "--cluster", local_cluster.name, "--working-dir",
                        str(tmp_path), "--", "python", "wait.py")
    submit.wait_for_output("job-started")
    job_id = next(line.split()[1] for line in submit.err if line.startswith("job "))
    assert submit.stop_with(signal.SIGINT) == 130
    assert f"stopping job {job_id}" in "".join(submit.err)
    assert get_job(local_cluster, job_id).info().state is JobState.STOPPED
    status = run_cli("job", "status", "--cluster", local_cluster.name, job_id)
    assert f"{job_id}: STOPPED" in status.stdout


def test_ctrl_c_during_train_leaves_no_training_actor(local_cluster: raykube.Cluster) -> None:
    train = RunningCli("train", "jobs/train_torch.py:train_loop", "--cluster",
                       local_cluster.name, "--workers", "2", "--name", "interrupted",
                       "--config", json.dumps({"lr": 0.01, "batch_size": 32, "epochs": 50}))
    dashboard = DashboardClient(local_cluster.dashboard_url,
                                local_cluster.endpoints.auth_token_path)

    def training_actors() -> list[str]:
        answer = dashboard.request("GET", "/api/v0/actors?limit=10000&detail=false")
        actors = answer["data"]["result"]["result"]
        return [a["class_name"] for a in actors
                if a["state"] == "ALIVE" and "Train" in a["class_name"]]

    train.wait_for_output("epoch=1, loss=")
    assert training_actors(), "the run's actors are seen while it runs"
    # Ray Train's own SIGINT handler aborts the run gracefully (its controller stops the
    # workers), and the command ends non-zero.
    assert train.stop_with(signal.SIGINT) != 0

    wait_for(lambda: training_actors() == [], timeout=60,
             what="the interrupted run's controller and workers to go")


def test_sigterm_during_serve_deploy_puts_back_what_ran(local_cluster: raykube.Cluster,
                                                        tmp_path: Path) -> None:
    (tmp_path / "weights").write_text("")
    spec_file = tmp_path / "never.serve.yaml"
    spec_file.write_text(json.dumps({
        "kind": "Serve", "name": "cli-cut", "framework": "torch",
        "predictor": "probes:NeverReady", "workingDir": str(PREDICTORS), "replicas": 1,
        "resources": {"cpus": 0.25},
        "versions": [{"version": "v1", "checkpoint": str(tmp_path / "weights")}],
    }))
    deploy = RunningCli("serve", "deploy", str(spec_file), "--cluster", local_cluster.name)
    deploy.wait_for_output("DEPLOYING")
    assert deploy.stop_with(signal.SIGTERM) == 143
    assert "putting back what ran before" in "".join(deploy.err)
    gone = run_cli("serve", "status", "cli-cut", "--cluster", local_cluster.name)
    assert gone.returncode == 9 and "no service 'cli-cut'" in gone.stderr
