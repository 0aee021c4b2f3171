"""Jobs through the Python API, the raykube CLI and Ray's own `ray job submit`, for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import raykube
from conftest import ROOT, assert_each_epoch_said_once, run_cli
from support.restart import ProcessImage
from raykube.backends.local.processes import find_processes
from raykube.backends.local.state import LocalRecord
from raykube.errors import BackendError, JobError, JobFailed
from raykube.specs.cluster import parse_spec
from raykube.submission.jobs import JobInfo, JobState, get_job, list_jobs, submit
from raykube.waiting import wait_for

pytestmark = pytest.mark.local


@pytest.fixture()
def job_dir(tmp_path: Path) -> Path:
    """A working dir with a script that passes, fails, or waits to be stopped."""
    (tmp_path / "task.py").write_text(
        "import os, sys, time, pathlib\n"
        "mode = sys.argv[1]\n"
        "print('hello from', os.getcwd().split('/')[-1] != '', mode, flush=True)\n"
        "if mode == 'fail':\n"
        "    sys.exit(3)\n"
        "if mode == 'block':\n"
        "    deadline = time.monotonic() + 600\n"
        "    while not pathlib.Path('never-created').exists() and time.monotonic() < deadline:\n"
        "        time.sleep(0.2)\n"
    )
    return tmp_path


def test_python_api_pass_fail_and_stop(local_cluster: raykube.Cluster, job_dir: Path) -> None:
    ok = submit(local_cluster, "python task.py pass", working_dir=str(job_dir))
    info = ok.wait(timeout=120)
    assert info.state is JobState.SUCCEEDED
    assert "hello from True pass" in ok.logs()

    bad = submit("rk-session", "python task.py fail", working_dir=str(job_dir))
    with pytest.raises(JobFailed, match="ended FAILED") as caught:
        bad.wait(timeout=120)
    assert f"raykube job logs {bad.job_id}" in caught.value.hint
    assert bad.status() is JobState.FAILED

    blocked = submit(local_cluster, "python task.py block", working_dir=str(job_dir))
    wait_for(lambda: blocked.status() is JobState.RUNNING, timeout=60, what="job running")
    assert blocked.stop()
    assert blocked.wait(timeout=60, check=False).state is JobState.STOPPED
    with pytest.raises(JobFailed, match="STOPPED"):
        blocked.wait(timeout=5)

    ids = {i.job_id for i in list_jobs(local_cluster)}
    assert {ok.job_id, bad.job_id, blocked.job_id} <= ids
    assert get_job(local_cluster, ok.job_id).status() is JobState.SUCCEEDED


def test_streamed_logs_arrive_in_order(local_cluster: raykube.Cluster, job_dir: Path) -> None:
    job = submit(local_cluster, "python -c \"[print(i, flush=True) for i in range(50)]\"")
    text = "".join(job.stream_logs())
    numbers = [int(line) for line in text.split() if line.isdigit()]
    assert numbers == list(range(50))


def test_raykube_cli_gates_ci(local_cluster: raykube.Cluster, job_dir: Path) -> None:
    ok = run_cli("job", "submit", "--cluster", "rk-session", "--working-dir", str(job_dir),
                 "--submission-id", "cli-pass", "--", "python", "task.py", "pass")
    assert ok.returncode == 0, ok.stderr
    assert "hello from True pass" in ok.stdout and "SUCCEEDED" in ok.stderr
    bad = run_cli("job", "submit", "--cluster", "rk-session", "--working-dir", str(job_dir),
                  "--submission-id", "cli-fail", "--", "python", "task.py", "fail")
    assert bad.returncode == 7 and "ended FAILED" in bad.stderr and "Traceback" not in bad.stderr
    job_id = "cli-fail"
    status = run_cli("job", "status", "--cluster", "rk-session", job_id)
    assert status.returncode == 0 and "FAILED" in status.stdout
    assert "hello from True fail" in run_cli("job", "logs", "--cluster", "rk-session",
                                             job_id).stdout


def test_ray_job_submit_trains_on_the_cluster(local_cluster: raykube.Cluster) -> None:
    """Ray's own CLI, configured only by `raykube env`, runs the torch example to accuracy."""
    env = dict(os.environ)
    for line in run_cli("env", "rk-session").stdout.splitlines():
        key, value = line.removeprefix("export ").split("=", 1)
        env[key] = value
    ray_cli = str(Path(sys.executable).with_name("ray"))
    done = subprocess.run(
        [ray_cli, "job", "submit", "--working-dir", "jobs", "--runtime-env-json",
         '{"env_vars": {"RAYKUBE_QUIET": "0"}}', "--", "python", "train_torch.py",
         "--epochs", "4"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert_each_epoch_said_once(done.stdout + done.stderr, 4)
    summary = json.loads(next(line for line in done.stdout.splitlines()
                              if line.startswith('{"checkpoint"')))
    assert summary["test_accuracy"] >= 0.9 and summary["replicas_identical"] is True
    failed = subprocess.run(
        [ray_cli, "job", "submit", "--", "python", "-c", "import sys; sys.exit(4)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert failed.returncode != 0


def test_ray_job_submit_driver_keeps_its_working_dir_while_worker_nodes_run_its_tasks(
        local_cluster: raykube.Cluster, tmp_path: Path) -> None:
    """Each local node has its own session folder, as each pod has: a worker node unpacking the
    job's working_dir must not delete the folder the driver stands in (which made `import
    torch` die with a oneMKL "Cannot load libtorch_cpu.so"), and each line a remote task prints
    reaches the job's output once, not once per node."""
    (tmp_path / "probe.py").write_text(
        "import os, ray\n"
        "ray.init()\n"
        "@ray.remote(num_cpus=1)\n"
        "def task(i):\n"
        "    print(f'printed-by-task-{i}', flush=True)\n"
        "    return ray.get_runtime_context().get_node_id()\n"
        "nodes = ray.get([task.remote(i) for i in range(2)])\n"
        "print('cwd-after-tasks', os.path.isdir(os.getcwd()), flush=True)\n"
        "import torch\n"
        "print('torch-imported', torch.tensor([2.0]).sum().item(), flush=True)\n"
    )
    (tmp_path / "unique.txt").write_text(os.urandom(8).hex())  # a package no node has yet
    env = dict(os.environ)
    for line in run_cli("env", "rk-session").stdout.splitlines():
        key, value = line.removeprefix("export ").split("=", 1)
        env[key] = value
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ray")), "job", "submit", "--working-dir",
         str(tmp_path), "--", "python", "probe.py"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "cwd-after-tasks True" in output and "torch-imported 2.0" in output
    for i in range(2):
        printed = [line for line in output.splitlines() if line.endswith(f"printed-by-task-{i}")]
        assert len(printed) == 1, printed


def _dashboard_of(record: LocalRecord) -> int:
    """The PID of the cluster's dashboard process (the head's ``dashboard.py``)."""
    found = [pid for pid in find_processes(record.marker)
             if b"dashboard/dashboard.py" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(found) == 1, found
    return found[0]


def test_job_wait_and_its_log_stream_survive_a_dashboard_restart(tmp_path: Path) -> None:
    """The dashboard killed while a job runs, then started again (as a head container's
    restart would): `wait` and the log stream carry on, and no line is lost or repeated."""
    go = tmp_path / "go"
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "slow.py").write_text(
        "import pathlib, sys, time\n"
        "print('before-the-restart', flush=True)\n"
        "deadline = time.monotonic() + 300\n"
        "while not pathlib.Path(sys.argv[1]).exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.2)\n"
        "print('after-the-restart', flush=True)\n"
    )
    spec = parse_spec({"name": "rk-dash", "headGroupSpec": {"rayStartParams": {"num-cpus": "1"}},
                       "workerGroupSpecs": []})
    cluster = raykube.up(spec, timeout=120)
    try:
        record = LocalRecord.load("rk-dash")
        assert record is not None
        job = submit(cluster, f"python slow.py {go}", working_dir=str(tmp_path / "work"))
        chunks: list[str] = []
        reader = threading.Thread(target=lambda: chunks.extend(job.stream_logs()), daemon=True)
        reader.start()
        wait_for(lambda: "before-the-restart" in "".join(chunks), timeout=120,
                 what="the job's first line")
        dashboard = ProcessImage.of(_dashboard_of(record))
        dashboard.kill()
        with pytest.raises(BackendError) as refused:
            job.info()
        assert refused.value.retryable
        waited: list[JobInfo] = []
        waiter = threading.Thread(target=lambda: waited.append(job.wait(timeout=240)),
                                  daemon=True)
        waiter.start()  # waits through the outage
        dashboard.start_again()
        go.touch()
        waiter.join(timeout=240)
        reader.join(timeout=120)
        assert waited and waited[0].state is JobState.SUCCEEDED
        text = "".join(chunks)
        assert text.count("before-the-restart") == 1 and text.count("after-the-restart") == 1
    finally:
        cluster.down()


def test_bad_working_dirs(local_cluster: raykube.Cluster, tmp_path: Path) -> None:
    with pytest.raises(JobError, match="does not exist"):
        submit(local_cluster, "true", working_dir=str(tmp_path / "missing"))
    big = tmp_path / "big"
    big.mkdir()
    (big / "data.bin").write_bytes(os.urandom(3 * 2**20))
    result = run_cli("job", "submit", "--cluster", "rk-session", "--working-dir", str(big),
                     "--", "true", env={"RAY_max_grpc_message_size": str(2**20)})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "zips to 3.00MiB; Ray's Jobs API uploads at most 1.00MiB" in result.stderr
    assert "storage path" in result.stderr and ".rayignore" in result.stderr
    # What Ray's packaging leaves out is not counted: the same folder, its data ignored.
    (big / ".rayignore").write_text("data.bin\n")
    (big / "ok.py").write_text("print('uploaded without data.bin')\n")
    accepted = run_cli("job", "submit", "--cluster", "rk-session", "--working-dir", str(big),
                       "--", "python", "ok.py", env={"RAY_max_grpc_message_size": str(2**20)})
    assert accepted.returncode == 0, accepted.stderr[-2000:]
    assert "uploaded without data.bin" in accepted.stdout


def test_unknown_cluster_and_wrong_token(local_cluster: raykube.Cluster, tmp_path: Path) -> None:
    missing = run_cli("job", "submit", "--cluster", "nope", "--", "true")
    assert missing.returncode == 3 and "no local cluster named 'nope'" in missing.stderr
    wrong = tmp_path / "wrong_token"
    wrong.write_text("0" * 64)
    result = run_cli("job", "list", "--cluster", local_cluster.dashboard_url,
                     env={"RAY_AUTH_TOKEN_PATH": str(wrong)})
    assert result.returncode == 8, result.stderr
    assert "rejected this client's auth token" in result.stderr
    with pytest.raises(BackendError):
        list_jobs("http://127.0.0.1:9")


def test_job_submit_takes_ray_job_submits_flags(local_cluster: raykube.Cluster,
                                                tmp_path: Path) -> None:
    (tmp_path / "env.yaml").write_text("env_vars:\n  GREETING: from-the-runtime-env-file\n")
    done = run_cli("job", "submit", "--cluster", "rk-session", "--runtime-env",
                   str(tmp_path / "env.yaml"), "--metadata-json", '{"commit": "abc123"}',
                   "--entrypoint-memory", str(10**6), "--entrypoint-num-cpus", "0",
                   "--submission-id", "rk-flags", "--", "sh", "-c", 'echo "got $GREETING"')
    assert done.returncode == 0, done.stderr[-2000:]
    assert "got from-the-runtime-env-file" in done.stdout
    shown = json.loads(run_cli("job", "status", "--cluster", "rk-session", "rk-flags", "-o",
                               "json").stdout)
    assert shown["metadata"] == {"commit": "abc123"} and shown["state"] == "SUCCEEDED"
    # Every flag is checked before the cluster is looked up (exit 2, not 3 for "no cluster").
    for flags, words in (
            (["--entrypoint-resources", '{"group:cpu": -1}'], "numbers >= 0"),
            (["--metadata-json", '{"n": 1}'], "must be strings"),
            (["--runtime-env", str(tmp_path / "missing.yaml")], "no such spec file"),
            (["--runtime-env", str(tmp_path / "env.yaml"), "--runtime-env-json", "{}"],
             "both given")):
        refused = run_cli("job", "submit", "--cluster", "nope", *flags, "--", "true")
        assert refused.returncode == 2 and words in refused.stderr, refused.stderr
