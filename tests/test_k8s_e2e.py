"""Workloads end to end on KubeRay clusters: the real control plane of ../shared/k8s, the real
KubeRay operator, and Ray really running in the pods it creates (tests/support/podrunner.py
plays the kubelet: each pod's own command in its own network/PID/mount sandbox).

Every test goes through raykube's public interfaces (the CLI, the Python API, the real
``ray job submit``, a notebook kernel) from this machine, through raykube's own port-forward
over the API server, as a user's laptop or CI would. What stays simulated: nodes (kwok), images
(the project's Python environment stands in for rayproject/ray) and GPUs (logical: the
``--num-gpus`` resource KubeRay passes from the ``nvidia.com/gpu`` limit).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import raykube
from conftest import (
    ROOT,
    SPECS,
    free_port,
    make_namespace,
    provide_volume,
    registered_epoch,
    run_cli,
)
from raykube.errors import BackendError
from raykube.specs.cluster import AuthMode, load_spec
from raykube.waiting import wait_for

pytestmark = pytest.mark.k8s_e2e

CLUSTER = "rk-e2e"
ACCURACY_BAR = 0.90


@dataclass
class E2ECluster:
    """The shared KubeRay cluster of this module and where its storage lies on this machine."""

    namespace: str
    cluster: raykube.Cluster
    storage: Path

    def cli(self, command: str, *args: str, timeout: float = 600
            ) -> subprocess.CompletedProcess[str]:
        """``raykube COMMAND --kube -n NAMESPACE ARGS...`` (``command`` may be two words)."""
        return run_cli(*command.split(), "--kube", "-n", self.namespace, *args,
                       timeout=timeout)


@pytest.fixture(scope="module")
def e2e(kube: dict[str, str], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[E2ECluster]:
    """One KubeRay cluster (head, CPU group, 2-GPU group, storage) for the module's tests."""
    from kubernetes import client

    namespace = make_namespace("e2e")
    storage = provide_volume(namespace, f"{CLUSTER}-storage", tmp_path_factory.mktemp("pv"))
    spec = load_spec(SPECS / "kube-e2e.yaml")
    spec.namespace = namespace
    cluster = raykube.up(spec, backend="kuberay", timeout=300)
    yield E2ECluster(namespace, cluster, storage)
    client.CoreV1Api().delete_namespace(namespace)


def pods_of(namespace: str, selector: str) -> list[Any]:
    from kubernetes import client

    return [p for p in client.CoreV1Api().list_namespaced_pod(
        namespace, label_selector=selector).items if p.metadata.deletion_timestamp is None]


def summary_of(output: str) -> dict[str, Any]:
    """The JSON summary line an example job prints."""
    line = next(line for line in reversed(output.splitlines())
                if line.startswith("{") and '"test_accuracy"' in line)
    return dict(json.loads(line))


def worker_ips(output: str) -> set[str]:
    """Pod IPs the Ray Train workers ran at, from Ray's log prefixes."""
    return set(re.findall(r"RayTrainWorker pid=\d+, ip=([\d.]+)", output))


def test_up_waits_until_every_worker_joined_ray(e2e: E2ECluster) -> None:
    status = e2e.cluster.status()
    assert status.head_ready and status.is_ready
    gpu_pod = pods_of(e2e.namespace, "ray.io/group=gpu")[0]
    assert gpu_pod.spec.node_name.startswith("gpu-node-")
    by_group = {n.group: n for n in status.nodes if n.alive}
    assert by_group["gpu"].resources["GPU"] == 2, "the nvidia.com/gpu limit became Ray GPUs"
    assert "GPU" not in by_group["cpu"].resources

    shown = e2e.cli("status", CLUSTER)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"cpu\s+1\s+1\s+0\s+2", shown.stdout), shown.stdout

    grown = e2e.cli("scale", CLUSTER, "--group", "cpu", "--replicas", "2", "--timeout", "180")
    assert grown.returncode == 0, grown.stderr
    assert e2e.cluster.status().group("cpu").ready == 2, "two CPU pods are Ray nodes"
    shrunk = e2e.cli("scale", CLUSTER, "--group", "cpu", "--replicas", "1", "--timeout", "180")
    assert shrunk.returncode == 0, shrunk.stderr
    assert len(pods_of(e2e.namespace, "ray.io/group=cpu")) == 1


@pytest.fixture(scope="module")
def torch_job(e2e: E2ECluster) -> subprocess.CompletedProcess[str]:
    """The PyTorch example trained on the GPU group by `raykube job submit` (its checkpoint
    also serves the RayService test)."""
    return e2e.cli("job submit", "--cluster", CLUSTER, "--working-dir", "jobs", "--",
                   "python", "train_torch.py", "--gpus", "1", "--epochs", "5")


def test_raykube_job_submit_trains_torch_on_the_gpu_group(
        e2e: E2ECluster, torch_job: subprocess.CompletedProcess[str]) -> None:
    done = torch_job
    assert done.returncode == 0, done.stderr[-3000:]
    summary = summary_of(done.stdout)
    assert summary["test_accuracy"] >= ACCURACY_BAR and summary["replicas_identical"]
    gpu_pod = pods_of(e2e.namespace, "ray.io/group=gpu")[0]
    assert worker_ips(done.stdout) == {gpu_pod.status.pod_ip}, "both workers on the GPU pod"
    assert summary["checkpoint"].startswith("/mnt/checkpoints/")
    assert (e2e.storage / summary["checkpoint"].removeprefix("/mnt/checkpoints/")).is_dir()


def test_ray_job_submit_cli_trains_tensorflow_through_the_port_forward(
        e2e: E2ECluster, tmp_path: Path) -> None:
    port = free_port()
    forward = subprocess.Popen(  # stderr to a file: an unread pipe could fill and block it
        [sys.executable, "-m", "raykube.cli", "port-forward", "--kube", "-n", e2e.namespace,
         CLUSTER, "--dashboard-port", str(port)],
        stdout=subprocess.PIPE, stderr=(tmp_path / "forward.err").open("w"), text=True,
        cwd=ROOT)
    try:
        first = forward.stdout.readline() if forward.stdout else ""
        assert first.strip() == f"export RAY_API_SERVER_ADDRESS=http://127.0.0.1:{port}"
        exported = {}  # the token settings it prints next, as `eval` would take them
        while (line := forward.stdout.readline() if forward.stdout else "").startswith("export"):
            key, _, value = line.removeprefix("export ").strip().partition("=")
            exported[key] = shlex.split(value)[0]
        assert exported["RAY_AUTH_MODE"] == "token", "the cluster has token auth"
        done = subprocess.run(
            [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address",
             f"http://127.0.0.1:{port}", "--working-dir", "jobs", "--", "python",
             "train_tensorflow.py", "--epochs", "4"],
            capture_output=True, text=True, timeout=600, cwd=ROOT,
            env={**os.environ, **exported})
    finally:
        forward.terminate()  # SIGTERM, as a CI runner stops a background step
        assert forward.wait(timeout=30) == 0, (tmp_path / "forward.err").read_text()[-2000:]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = summary_of(done.stdout)
    assert summary["framework"] == "tensorflow" and summary["test_accuracy"] >= ACCURACY_BAR
    assert summary["replicas_identical"]


def test_the_cluster_refuses_a_request_without_its_token(e2e: E2ECluster) -> None:
    """Any pod that reaches the head (here: this machine, on the pod network) must bring the
    cluster's token; raykube's own commands bring it (every other test of this module)."""
    import base64

    from kubernetes import client

    head = pods_of(e2e.namespace, "ray.io/node-type=head")[0]
    url = f"http://{head.status.pod_ip}:8265/api/jobs/"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=30)
    assert refused.value.code in (401, 403)
    secret = client.CoreV1Api().read_namespaced_secret(f"{CLUSTER}-ray-token", e2e.namespace)
    token = base64.b64decode(secret.data["auth_token"]).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
    listed = e2e.cli("job list", "--cluster", CLUSTER)
    assert listed.returncode == 0, listed.stderr


def test_mxnet_job_runs_with_its_own_python_in_the_pods(e2e: E2ECluster) -> None:
    """MXNet needs numpy < 2, so its workers run another Python (RAYKUBE_MXNET_PYTHON, given to
    Ray as ``py_executable``): on Kubernetes that environment must be in the pods' image; here
    the pods see the project's .venv-mxnet as they see .venv."""
    from raykube.frameworks.mxnet import MXNET_PYTHON_ENV

    python = os.environ.get(MXNET_PYTHON_ENV) or str(ROOT / ".venv-mxnet" / "bin" / "python")
    if not Path(python).exists():
        pytest.skip(f"no MXNet environment at {python}: run scripts/setup-mxnet.sh")
    done = e2e.cli("job submit", "--cluster", CLUSTER, "--working-dir", "jobs",
                   "--runtime-env-json", json.dumps({"env_vars": {MXNET_PYTHON_ENV: python}}),
                   "--", "python", "train_mxnet.py", "--epochs", "5")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = summary_of(done.stdout)
    assert summary["framework"] == "mxnet" and summary["test_accuracy"] >= ACCURACY_BAR
    assert summary["replicas_identical"]

OPEN_CLUSTER = "rk-e2e-open"
"""A small cluster without token auth, for RayJobs the KubeRay operator (v1.5.0) submits."""


def rayjob_spec(folder: Path, name: str, entrypoint: str, mode: str,
                cluster: str = OPEN_CLUSTER) -> Path:
    path = folder / f"{name}.rayjob.yaml"
    path.write_text(json.dumps({
        "kind": "RayJob", "name": name, "entrypoint": entrypoint, "submissionMode": mode,
        "clusterSelector": {"ray.io/cluster": cluster},
    }))
    return path


@pytest.fixture()
def open_cluster(e2e: E2ECluster, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Path]:
    """A head and one GPU worker with authOptions.mode disabled, beside the module's cluster,
    with a storage claim of its own; yields where that storage lies on this machine."""
    spec = load_spec(SPECS / "kube-e2e.yaml")
    spec.name, spec.namespace = OPEN_CLUSTER, e2e.namespace
    spec.auth_options.mode = AuthMode.DISABLED
    spec.worker_group_specs = [spec.worker_group("gpu")]
    storage = provide_volume(e2e.namespace, f"{OPEN_CLUSTER}-storage",
                             tmp_path_factory.mktemp("open-pv"))
    cluster = raykube.up(spec, backend="kuberay", timeout=300)
    yield storage
    cluster.down()


def batch_rayjob_spec(folder: Path, storage: Path, checkpoint: Path) -> Path:
    """A batch spec whose RayJob predicts 4,000 digits-derived rows on the open cluster's
    storage claim (``/mnt/checkpoints`` in its pods) with the torch job's checkpoint, the
    predictor's code a zip on that claim."""
    import shutil

    sys.path.insert(0, str(ROOT / "jobs"))
    from digits_data import write_digits_parquet

    write_digits_parquet(storage / "digits", 0, 4000)
    shutil.copytree(checkpoint, storage / "checkpoint")
    shutil.make_archive(str(storage / "code"), "zip", root_dir=ROOT / "jobs")
    path = folder / "digits.batch.yaml"
    path.write_text(json.dumps({
        "kind": "BatchPredict", "name": "digits-batch", "framework": "torch",
        "predictor": "digits_serving:TorchDigits", "workingDir": "file:///mnt/checkpoints/code.zip",
        "checkpoint": "/mnt/checkpoints/checkpoint", "input": "/mnt/checkpoints/digits/test",
        "output": "/mnt/checkpoints/predictions", "features": ["pixels"],
        "actorPool": {"minSize": 1, "maxSize": 1}, "resources": {"cpus": 0.5},
        "clusterSelector": {"ray.io/cluster": OPEN_CLUSTER},
    }))
    return path


def test_rayjobs_in_k8s_job_mode_and_http_mode_a_batch_spec_and_a_failing_one(
        e2e: E2ECluster, open_cluster: Path, torch_job: subprocess.CompletedProcess[str],
        tmp_path: Path) -> None:
    count_gpus = "python -c \"import ray; ray.init(); print('gpus', ray.cluster_resources()['GPU'])\""
    guarded = e2e.cli("job apply", str(rayjob_spec(tmp_path, "to-auth", count_gpus,
                                                    "K8sJobMode", CLUSTER)))
    assert guarded.returncode == 1 and "has Ray token auth" in guarded.stderr
    assert "raykube job submit --kube" in guarded.stderr, "says what works instead"
    for name, mode in (("in-k8s-job", "K8sJobMode"), ("over-http", "HTTPMode")):
        done = e2e.cli("job apply", str(rayjob_spec(tmp_path, name, count_gpus, mode)),
                       "--timeout", "300")
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"RayJob {e2e.namespace}/{name}: SUCCEEDED" in done.stdout
        assert f"on RayCluster {OPEN_CLUSTER}" in done.stdout
    submitter = pods_of(e2e.namespace, "job-name=in-k8s-job")
    assert submitter and submitter[0].status.phase == "Succeeded", "the runner ran the Job's pod"

    # A batch spec, as the RayJob raykube renders for it: predictions on the storage claim.
    checkpoint = e2e.storage / summary_of(torch_job.stdout)["checkpoint"].removeprefix(
        "/mnt/checkpoints/")
    batch = e2e.cli("job apply", str(batch_rayjob_spec(tmp_path, open_cluster, checkpoint)),
                    "--timeout", "300")
    assert batch.returncode == 0, batch.stderr[-3000:]
    assert f"RayJob {e2e.namespace}/digits-batch: SUCCEEDED" in batch.stdout
    import pyarrow.dataset as ds

    from digits_serving import TorchDigits, predict_locally
    from raykube.data import columns_to_numpy

    predicted = ds.dataset(open_cluster / "predictions").to_table(columns=["id", "prediction"])
    rows = ds.dataset(open_cluster / "digits" / "test").to_table(columns=["id", "pixels"])
    answers = dict(zip(predicted.column("id").to_pylist(),
                       predicted.column("prediction").to_pylist(), strict=True))
    assert predicted.num_rows == len(answers) == rows.num_rows == 4000
    assert set(answers) == set(rows.column("id").to_pylist()), "one prediction per input row"
    expected = predict_locally(TorchDigits, str(checkpoint),
                               columns_to_numpy(rows, ["pixels"])["pixels"])
    assert [answers[i] for i in rows.column("id").to_pylist()] == expected, (
        "the model's own answers")

    failing = "python -c \"raise SystemExit('digits file missing at /data/digits.npy')\""
    failed = e2e.cli("job apply", str(rayjob_spec(tmp_path, "fails", failing, "K8sJobMode")),
                     "--timeout", "300")
    assert failed.returncode == 7, failed.stderr[-3000:]
    assert "RayJob" in failed.stderr and "ended FAILED" in failed.stderr
    assert "digits file missing at /data/digits.npy" in failed.stderr, "the job's own message"
    assert "Traceback" not in failed.stderr.split("--- last output ---")[0]


def test_notebook_connects_through_the_port_forward(e2e: E2ECluster) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(ROOT / "examples" / "kubernetes.ipynb", as_version=4)
    env = {"RAYKUBE_CLUSTER": CLUSTER, "RAYKUBE_NAMESPACE": e2e.namespace}
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT)}}).execute()
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    text = ["".join(o.get("text", "") for o in c.get("outputs", []))
            for c in notebook.cells if c.cell_type == "code"]
    assert f"connected to {CLUSTER} through ray://127.0.0.1:" in text[0]
    assert "squares: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]" in text[1]
    gpu_pod = pods_of(e2e.namespace, "ray.io/group=gpu")[0]
    assert f"ran on {gpu_pod.status.pod_ip}" in text[2], "the GPU task ran on the GPU pod"
    assert "disconnected: True" in text[-1]


def test_worker_pod_killed_mid_training_resumes_from_its_checkpoint(e2e: E2ECluster) -> None:
    job = raykube.submit(
        e2e.cluster, "python train_torch.py --gpus 1 --epochs 10 --epoch-delay 1 "
        "--max-failures 3 --name survives-a-crash", working_dir=str(ROOT / "jobs"))
    wait_for(lambda: (registered_epoch(e2e.storage, "survives-a-crash") or 0) >= 2,
             timeout=300, what="a registered checkpoint of epoch 2")
    before = registered_epoch(e2e.storage, "survives-a-crash")
    assert before is not None
    gpu_pod = pods_of(e2e.namespace, "ray.io/group=gpu")[0]
    sandbox = "rk-" + gpu_pod.metadata.uid.replace("-", "")[:12]
    pids = subprocess.run(["ip", "netns", "pids", sandbox], capture_output=True, text=True,
                          check=True).stdout.split()
    assert pids, "the GPU pod's processes run in its sandbox"
    for pid in pids:  # the container crashes: every process of the pod dies at once
        subprocess.run(["kill", "-KILL", pid], check=False)
    info = job.wait(timeout=600)
    assert info.state.value == "SUCCEEDED"
    summary = summary_of(job.logs())
    assert summary["started_at_epoch"] >= before + 1, "resumed, not restarted from epoch 0"
    assert summary["epochs"] == 10 and summary["test_accuracy"] >= ACCURACY_BAR

    restarted = pods_of(e2e.namespace, "ray.io/group=gpu")[0]
    restarts = sum(s.restart_count for s in restarted.status.container_statuses or [])
    assert restarted.metadata.uid != gpu_pod.metadata.uid or restarts >= 1, \
        "Kubernetes saw the crash (a restarted container or a replaced pod)"
    assert e2e.cluster.status().group("gpu").ready == 1, "the GPU pod is a Ray node again"


def serve_spec(folder: Path, code: str, checkpoint: str, versions: dict[str, int]) -> Path:
    """A serve spec for the digits model as a RayService on tests/specs/kube-serve.yaml."""
    import yaml

    path = folder / "digits.serve.yaml"
    path.write_text(yaml.safe_dump({
        "kind": "Serve", "name": "digits", "framework": "torch",
        "predictor": "digits_serving:TorchDigits", "workingDir": code,
        "cluster": str(SPECS / "kube-serve.yaml"), "replicas": 1, "resources": {"cpus": 0.5},
        "versions": [{"version": v, "checkpoint": checkpoint, "weight": w}
                     for v, w in versions.items()],
    }))
    return path


def test_rayservice_serves_through_the_port_forward_and_rolls_out_without_errors(
        e2e: E2ECluster, torch_job: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    """The service as a RayService on a cluster of its own: Ready with serve endpoints, the
    model's own answers over HTTP through raykube's port-forward, and v1 -> v2 rolled out
    (start, shift, retire; each a serveConfigV2 KubeRay applies in place) under a client
    that counts every failed request."""
    import shutil

    import numpy as np
    from kubernetes import client

    from raykube.backends.kuberay.backend import KubeRayBackend
    from raykube.serving.service import post_json
    from support.load import Load

    sys.path.insert(0, str(ROOT / "jobs"))
    from digits import load_digits_split
    from digits_serving import TorchDigits, predict_locally

    checkpoint = summary_of(torch_job.stdout)["checkpoint"]
    provide_volume(e2e.namespace, "rk-serve-storage", e2e.storage)
    # Code the pods can fetch: a zip on the shared storage, as on an NFS volume (file:// URI).
    shutil.make_archive(str(e2e.storage / "code" / "jobs"), "zip", root_dir=ROOT,
                        base_dir="jobs")
    code = "file:///mnt/checkpoints/code/jobs.zip"

    first = e2e.cli("serve deploy", str(serve_spec(tmp_path, code, checkpoint, {"v1": 100})),
                    "--timeout", "300")
    assert first.returncode == 0, first.stderr[-3000:]
    raw = client.CustomObjectsApi().get_namespaced_custom_object(
        "ray.io", "v1", e2e.namespace, "rayservices", "digits")
    assert raw["status"]["numServeEndpoints"] > 0
    assert {c["type"]: c["status"] for c in raw["status"]["conditions"]}["Ready"] == "True"
    cluster = raw["status"]["activeServiceStatus"]["rayClusterName"]

    url = KubeRayBackend(namespace=e2e.namespace).endpoints(cluster).serve_url + "/digits"
    _, _, X_test, _ = load_digits_split()
    batch = X_test[:40]
    answer = post_json(url, {"instances": batch.tolist()})
    local_checkpoint = str(e2e.storage / checkpoint.removeprefix("/mnt/checkpoints/"))
    assert answer["predictions"] == predict_locally(TorchDigits, local_checkpoint,
                                                    np.asarray(batch))
    assert answer["version"] == "v1"

    with Load(url, clients=3, body={"instances": batch[:4].tolist()}) as load:
        load.wait_for_requests(20)
        rolled = e2e.cli("serve deploy", str(serve_spec(tmp_path, code, checkpoint,
                                                        {"v2": 100})), "--timeout", "300")
        assert rolled.returncode == 0, rolled.stderr[-3000:]
        during = (sum(load.answers.values()), list(load.failures))
        load.reset()
        load.wait_for_requests(20)
    assert during[0] >= 20 and during[1] == [], during[1][:3]
    assert load.failures == [], load.failures[:3]
    assert set(load.answers) == {"v2"}, "every request after the rollout meets v2"
    assert "RayService" in rolled.stdout and "digits--v2 RUNNING" in rolled.stdout
    assert "digits--v1" not in rolled.stdout, "v1 retired"
    assert client.CustomObjectsApi().get_namespaced_custom_object(
        "ray.io", "v1", e2e.namespace, "rayservices", "digits")["status"][
        "activeServiceStatus"]["rayClusterName"] == cluster, "rolled out in place"


def test_autoscaler_adds_a_gpu_pod_for_pending_work_and_removes_it_when_idle(
        kube: dict[str, str]) -> None:
    """Ray's autoscaler, run as KubeRay defines it (the head pod's sidecar, with the token of
    the service account KubeRay made), raises the group's replicas for GPU work the cluster
    cannot place, and removes the idle pod through workersToDelete."""
    from kubernetes import client

    namespace = make_namespace("autoscale")
    spec = load_spec(SPECS / "kube-autoscale.yaml")
    spec.namespace = namespace
    try:
        cluster = raykube.up(spec, backend="kuberay", timeout=240)
        head = pods_of(namespace, "ray.io/node-type=head")[0]
        assert {c.name for c in head.spec.containers} == {"ray-head", "autoscaler"}
        assert cluster.status().group("gpu").ready == 0

        job = raykube.submit(cluster, "python -c \"import ray; ray.init(); print('ran on', "
                             "ray.get(ray.remote(num_gpus=1)(ray.util.get_node_ip_address)"
                             ".remote()))\"")
        grown = wait_for(lambda: pods_of(namespace, "ray.io/group=gpu") or None, timeout=120,
                         what="the autoscaler to add a GPU pod")
        raw = client.CustomObjectsApi().get_namespaced_custom_object(
            "ray.io", "v1", namespace, "rayclusters", spec.name)
        assert raw["spec"]["workerGroupSpecs"][0]["replicas"] == 1, "the autoscaler's patch"
        assert grown[0].spec.node_name.startswith("gpu-node-")
        assert job.wait(timeout=240).state.value == "SUCCEEDED"
        gpu_ip = pods_of(namespace, "ray.io/group=gpu")[0].status.pod_ip
        assert f"ran on {gpu_ip}" in job.logs(), "the GPU task ran on the new pod"

        wait_for(lambda: not pods_of(namespace, "ray.io/group=gpu"), timeout=180,
                 what="the idle GPU pod to be removed")
        raw = client.CustomObjectsApi().get_namespaced_custom_object(
            "ray.io", "v1", namespace, "rayclusters", spec.name)
        assert raw["spec"]["workerGroupSpecs"][0]["replicas"] == 0
        cluster.down()
    finally:
        client.CoreV1Api().delete_namespace(namespace)


# A RayCluster as KubeRay's users make it without raykube: the operator's own sample
# (ray-operator/config/samples/ray-cluster.sample.yaml of KubeRay v1.5.0, its comments dropped),
# applied with kubectl. raykube must list it, read its status, and reach it for jobs, drivers
# and port-forwards as it does its own clusters.
KUBERAY_SAMPLE = """
apiVersion: ray.io/v1
kind: RayCluster
metadata:
  name: raycluster-kuberay
spec:
  rayVersion: '2.46.0'
  headGroupSpec:
    rayStartParams: {}
    template:
      spec:
        containers:
        - name: ray-head
          image: rayproject/ray:2.46.0
          resources:
            limits: {cpu: 1, memory: 2G}
            requests: {cpu: 1, memory: 2G}
          ports:
          - {containerPort: 6379, name: gcs-server}
          - {containerPort: 8265, name: dashboard}
          - {containerPort: 10001, name: client}
  workerGroupSpecs:
  - replicas: 1
    minReplicas: 1
    maxReplicas: 5
    groupName: workergroup
    rayStartParams: {}
    template:
      spec:
        containers:
        - name: ray-worker
          image: rayproject/ray:2.46.0
          resources:
            limits: {cpu: 1, memory: 1G}
            requests: {cpu: 1, memory: 1G}
"""


def test_a_raycluster_raykube_did_not_make_is_listed_read_and_reached(
        kube: dict[str, str], tmp_path: Path) -> None:
    from kubernetes import client

    namespace = make_namespace("sample")
    kubectl = str(Path(kube["RAYKUBE_K8S_BIN"]) / "kubectl")
    try:
        subprocess.run([kubectl, "apply", "-n", namespace, "-f", "-"], input=KUBERAY_SAMPLE,
                       check=True, capture_output=True, text=True, timeout=60)
        name = "raycluster-kuberay"

        def ready() -> raykube.Cluster | None:
            try:
                found = raykube.get(name, backend="kuberay", namespace=namespace)
                return found if found.status().is_ready else None
            except BackendError:  # the head pod has just started: nothing to forward to yet
                return None

        cluster = wait_for(ready, timeout=180, what="the sample's head and worker to join Ray")
        assert cluster.status().group("workergroup").ready == 1 and cluster.spec is None

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return run_cli(*args, "--kube", "-n", namespace, timeout=300)

        listed = cli("list", "-o", "json")
        assert listed.returncode == 0, listed.stderr
        assert {"name": name, "state": "ready", "namespace": namespace}.items() <= \
            json.loads(listed.stdout)[0].items()
        everywhere = run_cli("list", "--kube", "-A")
        assert re.search(rf"^{namespace}\s+{name}\s+kuberay\s+ready", everywhere.stdout,
                         re.MULTILINE), everywhere.stdout
        shown = cli("status", name, "-o", "json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["is_ready"] is True

        (tmp_path / "nodes.py").write_text(
            "import ray\nray.init()\nprint('ray nodes:', len(ray.nodes()))\n")
        job = run_cli("job", "submit", "--kube", "-n", namespace, "--cluster", name,
                      "--working-dir", str(tmp_path), "--", "python", "nodes.py", timeout=300)
        assert job.returncode == 0 and "ray nodes: 2" in job.stdout, job.stderr[-2000:]

        driver = subprocess.run(
            [sys.executable, "-c", "import ray, raykube\n"
             f"raykube.connect('kuberay:{namespace}/{name}')\n"
             "print('alive:', sum(n['Alive'] for n in ray.nodes()))"],
            capture_output=True, text=True, timeout=180, cwd=ROOT)
        assert "alive: 2" in driver.stdout, driver.stderr[-2000:]

        port = free_port()
        forward = subprocess.Popen(
            [sys.executable, "-m", "raykube.cli", "port-forward", "--kube", "-n", namespace,
             name, "--dashboard-port", str(port), "--seconds", "120"],
            stdout=subprocess.PIPE, stderr=(tmp_path / "forward.err").open("w"), text=True,
            cwd=ROOT)
        try:
            printed = [forward.stdout.readline() for _ in range(2)] if forward.stdout else []
            assert "export RAY_AUTH_MODE=disabled\n" in printed, "the sample has no token"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version",
                                        timeout=30) as answer:
                assert json.loads(answer.read())["ray_version"]
        finally:
            forward.terminate()
            assert forward.wait(timeout=30) == 0, (tmp_path / "forward.err").read_text()
    finally:
        client.CoreV1Api().delete_namespace(namespace)


def test_prometheus_finds_every_ray_pod_through_the_rendered_pod_monitors(
        e2e: E2ECluster, tmp_path: Path) -> None:
    """A real Prometheus, configured as the Prometheus operator would from raykube's
    PodMonitors, with the pods the API server lists (tests/support/prom_operator: stand-ins for
    the operator and for Kubernetes discovery, which Debian's Prometheus leaves out), scrapes
    the Ray pods of the module's cluster: every pod's series carry ray_io_cluster."""
    import shutil
    import time

    import yaml as pyyaml

    from raykube.render.monitoring import render_pod_monitors
    from support.prom_operator import discovered_pods, scrape_jobs

    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus is not installed (.ci/run installs it)")
    discovery = tmp_path / "pods.json"
    discovery.write_text(json.dumps(discovered_pods(pods_of(e2e.namespace, ""))))
    spec = load_spec(SPECS / "kube-e2e.yaml")
    jobs = [job for monitor in render_pod_monitors(spec)
            for job in scrape_jobs(monitor, e2e.namespace, discovery_file=str(discovery))]
    config = tmp_path / "prometheus.yml"
    config.write_text(pyyaml.safe_dump({"global": {"scrape_interval": "2s"},
                                        "scrape_configs": jobs}))
    port = free_port()
    prometheus = subprocess.Popen(
        [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
         f"--storage.tsdb.path={tmp_path / 'data'}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))

    def scraped() -> dict[str, set[str]] | None:
        query = urllib.parse.urlencode({"query": "ray_node_mem_used"})
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?{query}",
                                        timeout=10) as answer:
                series = json.loads(answer.read())["data"]["result"]
        except OSError:
            return None
        found: dict[str, set[str]] = {}
        for s in series:
            found.setdefault(s["metric"].get("ray_io_cluster", ""), set()).add(
                s["metric"]["pod"])
        return found or None

    def targets() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets",
                                    timeout=10) as answer:
            data = json.loads(answer.read())["data"]
        active = [(t["labels"].get("pod"), t["health"], t.get("lastError", ""))
                  for t in data["activeTargets"]]
        dropped = [t["discoveredLabels"].get("__meta_kubernetes_pod_container_port_name")
                   for t in data["droppedTargets"]][:20]
        return f"active {active}; dropped ports {dropped}"

    try:
        pods = {p.metadata.name: "head" if p.metadata.labels.get("ray.io/node-type") == "head"
                else p.metadata.labels.get("ray.io/group")
                for p in pods_of(e2e.namespace, f"ray.io/cluster={CLUSTER}")}
        deadline = time.monotonic() + 120
        found = wait_for(lambda: (f := scraped()) and set(f.get(CLUSTER, set())) >= set(pods)
                         and f, timeout=max(1.0, deadline - time.monotonic()),
                         what=f"every pod of {CLUSTER} scraped",
                         describe=lambda: f"scraped {scraped()}; pods {pods}; targets "
                         f"{targets()}; log {(tmp_path / 'prometheus.log').read_text()[-1500:]}")
        assert set(found) == {CLUSTER}, "every series carries the cluster as ray_io_cluster"
        assert {pods[p] for p in found[CLUSTER] if p in pods} >= {"head", "cpu", "gpu"}
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)


def probes_on_storage(e2e: E2ECluster, name: str) -> Path:
    """A folder ``name`` on the storage the RayService pods mount (its claim made once per
    module), holding tests/predictors as ``predictors.zip`` for a ``file://`` workingDir."""
    import shutil

    from kubernetes.client.exceptions import ApiException

    try:
        provide_volume(e2e.namespace, "rk-serve-storage", e2e.storage)
    except ApiException as exc:  # a RayService test before made it
        assert exc.status == 409
    folder = e2e.storage / name
    folder.mkdir(exist_ok=True)
    shutil.make_archive(str(folder / "predictors"), "zip",
                        root_dir=Path(__file__).resolve().parent / "predictors")
    return folder


def test_rayservice_canaries_are_judged_promoted_and_rolled_back(
        e2e: E2ECluster, tmp_path: Path) -> None:
    """Judged rollouts on a RayService (each step a serveConfigV2 KubeRay applies in place),
    under a client through raykube's port-forward that counts every request: a healthy v2 is
    promoted (exit 0); then a v3 that fails every request is rolled back at its first step
    (exit 10), its failures confined to its share, and v2 serves everything again."""

    import yaml as pyyaml
    from kubernetes import client

    from raykube.backends.kuberay.backend import KubeRayBackend
    from support.load import Load

    folder = probes_on_storage(e2e, "judged")
    for version, faults in (("v1", {}), ("v2", {}), ("v3", {"fail": 1.0})):
        (folder / f"{version}.json").write_text(json.dumps(faults))

    def spec(versions: list[str]) -> Path:
        path = tmp_path / f"judged-{'-'.join(versions)}.serve.yaml"
        path.write_text(pyyaml.safe_dump({
            "kind": "Serve", "name": "judged", "framework": "torch",
            "predictor": "probes:Classifier",
            "workingDir": "file:///mnt/checkpoints/judged/predictors.zip",
            "cluster": str(SPECS / "kube-serve.yaml"), "replicas": 1,
            "resources": {"cpus": 0.25}, "batching": {"maxBatchSize": 1},
            "rollout": {"steps": [25, 100], "stepSeconds": 3, "minRequests": 20,
                        "maxErrorRate": 0.05, "stepTimeoutSeconds": 120},
            "versions": [{"version": v, "checkpoint": f"/mnt/checkpoints/judged/{v}.json",
                          "weight": 100 if i == 0 else 0} for i, v in enumerate(versions)]}))
        return path

    try:
        first = e2e.cli("serve deploy", str(spec(["v1"])), "--timeout", "300")
        assert first.returncode == 0, first.stderr[-3000:]
        cluster = client.CustomObjectsApi().get_namespaced_custom_object(
            "ray.io", "v1", e2e.namespace, "rayservices", "judged")["status"][
            "activeServiceStatus"]["rayClusterName"]
        url = KubeRayBackend(namespace=e2e.namespace).endpoints(cluster).serve_url + "/judged"
        with Load(url, clients=3, body={"instances": [[3.0, 1.0, 2.0, 3.0]]}) as load:
            load.wait_for_requests(20)
            promoted = e2e.cli("serve deploy", str(spec(["v1", "v2"])), "--timeout", "300")
            assert promoted.returncode == 0, promoted.stderr[-3000:]
            assert "rollout of v2 over v1: promoted" in promoted.stdout
            assert load.failures == [], load.failures[:3]
            load.reset()
            rolled = e2e.cli("serve deploy", str(spec(["v2", "v3"])), "--timeout", "300")
            assert rolled.returncode == 10, rolled.stderr[-3000:]
            assert "rollout of v3 over v2: rolled back at 25%: error rate" in rolled.stdout
            assert set(load.failed) == {"v3"}, load.failed
            load.reset()
            load.wait_for_requests(20)
        assert load.failures == [] and set(load.answers) == {"v2"}
    finally:
        client.CustomObjectsApi().delete_namespaced_custom_object(
            "ray.io", "v1", e2e.namespace, "rayservices", "judged")


def gcs_processes(cluster: str) -> list[Any]:
    """The GCS server processes of RayCluster ``cluster``'s head pod (by the pod's env)."""
    import psutil

    found = []
    for process in psutil.process_iter(["name"]):
        try:
            if (process.info["name"] == "gcs_server"
                    and process.environ().get("RAY_CLUSTER_NAME") == cluster):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_rayservice_keeps_serving_through_a_killed_gcs_and_a_deleted_head_pod(
        e2e: E2ECluster, kube: dict[str, str], tmp_path: Path) -> None:
    """GCS fault tolerance on a real Redis (on the pod bridge), as KubeRay's own GCS FT e2e
    test injects it: the GCS in the head pod killed (the container restarts), then the head
    pod deleted (KubeRay makes a new one at a new IP), under a client that sends to the worker
    pod's Serve proxy, as the serve Service would: no request fails, and the worker pod is the
    same one, never restarted."""
    import signal

    import yaml as pyyaml
    from kubernetes import client

    from support.load import Load
    from support.redis_server import REDIS, RedisServer

    if REDIS is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    folder = probes_on_storage(e2e, "ha")
    (folder / "v1.json").write_text("{}")
    bridge = kube["RAYKUBE_K8S_API_FROM_PODS"].rpartition(":")[0]
    core, custom = client.CoreV1Api(), client.CustomObjectsApi()
    with RedisServer(tmp_path / "redis", host=bridge) as redis:
        cluster_spec = pyyaml.safe_load((SPECS / "kube-serve.yaml").read_text())
        cluster_spec["gcsFaultToleranceOptions"] = {"redisAddress": redis.address}
        (tmp_path / "cluster.yaml").write_text(pyyaml.safe_dump(cluster_spec))
        (tmp_path / "ha.serve.yaml").write_text(pyyaml.safe_dump({
            "kind": "Serve", "name": "ha", "framework": "torch",
            "predictor": "probes:Classifier",
            "workingDir": "file:///mnt/checkpoints/ha/predictors.zip",
            "cluster": str(tmp_path / "cluster.yaml"), "replicas": 2,
            "resources": {"cpus": 0.25},
            "versions": [{"version": "v1", "checkpoint": "/mnt/checkpoints/ha/v1.json",
                          "weight": 100}]}))
        try:
            deployed = e2e.cli("serve deploy", str(tmp_path / "ha.serve.yaml"),
                               "--timeout", "300")
            assert deployed.returncode == 0, deployed.stderr[-3000:]
            cluster = custom.get_namespaced_custom_object(
                "ray.io", "v1", e2e.namespace, "rayservices", "ha")["status"][
                "activeServiceStatus"]["rayClusterName"]
            (head,) = pods_of(e2e.namespace, f"ray.io/cluster={cluster},ray.io/node-type=head")
            (worker,) = pods_of(e2e.namespace,
                                f"ray.io/cluster={cluster},ray.io/node-type=worker")
            url = f"http://{worker.status.pod_ip}:8000/ha"

            def restarts(pod: Any) -> int:
                return sum(c.restart_count for c in core.read_namespaced_pod(
                    pod.metadata.name, e2e.namespace).status.container_statuses or [])

            def head_ready(old_uid: str, old_gcs: set[int],
                           restarted_from: int | None = None) -> bool:
                pods = pods_of(e2e.namespace, f"ray.io/cluster={cluster},ray.io/node-type=head")
                if len(pods) != 1 or not pods[0].status.pod_ip:
                    return False
                pod = pods[0]
                if restarted_from is None and pod.metadata.uid == old_uid:
                    return False
                if restarted_from is not None and restarts(pod) <= restarted_from:
                    return False
                return bool({p.pid for p in gcs_processes(cluster)} - old_gcs) and all(
                    c.ready for c in pod.status.container_statuses or [])

            with Load(url, clients=3, body={"instances": [[3.0, 1.0, 2.0, 3.0]]}) as load:
                load.wait_for_requests(30)
                before = restarts(head)
                (gcs,) = gcs_processes(cluster)
                gcs.send_signal(signal.SIGKILL)
                wait_for(lambda: head_ready(head.metadata.uid, {gcs.pid}, before), timeout=180,
                         what="the head container to restart with a new GCS")
                load.wait_for_requests(30)
                restarted = {p.pid for p in gcs_processes(cluster)}
                core.delete_namespaced_pod(head.metadata.name, e2e.namespace)
                wait_for(lambda: head_ready(head.metadata.uid, restarted), timeout=240,
                         what="KubeRay to make a new head pod with a running GCS")
                load.wait_for_requests(60)
            print(f"head loss on KubeRay: {load.count} requests, {len(load.failures)} failed")
            assert load.failures == [], load.failures[:3]
            (after,) = pods_of(e2e.namespace, f"ray.io/cluster={cluster},ray.io/node-type=worker")
            assert after.metadata.uid == worker.metadata.uid and restarts(after) == 0
            assert redis.keys(), "the GCS kept its tables in Redis"
        finally:
            custom.delete_namespaced_custom_object("ray.io", "v1", e2e.namespace, "rayservices",
                                                   "ha")
        # KubeRay's Redis clean-up job runs in a pod too; the RayCluster goes once it did.
        wait_for(lambda: cluster not in {c["metadata"]["name"] for c in
                                         custom.list_namespaced_custom_object(
                                             "ray.io", "v1", e2e.namespace,
                                             "rayclusters")["items"]},
                 timeout=240, what="the RayService's RayCluster to be deleted")
        assert redis.keys() == [], "KubeRay's clean-up job emptied Redis"


# Last: it takes the module's cluster down.
def test_down_removes_every_pod_and_keeps_their_logs(e2e: E2ECluster, tmp_path: Path) -> None:
    live = e2e.cli("logs", CLUSTER, "--node", "head", "--out-dir", str(tmp_path / "live"))
    assert live.returncode == 0 and live.stdout.startswith("head: "), live.stderr
    done = e2e.cli("down", CLUSTER, "--timeout", "120")
    assert done.returncode == 0, done.stderr
    assert pods_of(e2e.namespace, f"ray.io/cluster={CLUSTER}") == []
    kept = e2e.cli("logs", CLUSTER, "--out-dir", str(tmp_path / "kept"))
    assert kept.returncode == 0, kept.stderr
    head_log = (tmp_path / "kept" / "head.log").read_text()
    assert "Ray runtime started" in head_log, head_log[-2000:]
    assert "worker-" in kept.stdout, "the worker pods' logs are kept too"
