"""The KubeRay backend against a real control plane (kube-apiserver, etcd, scheduler,
controller-manager, KubeRay operator v1.5.0) on simulated kwok nodes from ../shared/k8s.

What is real here: the API server's validation, RBAC and conflicts; the operator creating
pods and filling status conditions; the scheduler binding pods by GPUs, taints and selectors.
What is simulated: the nodes (kwok); the pod runner (tests/support/podrunner.py) runs each pod's
own commands, so "ready" here means Ray's head answers and every worker joined it.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

import raykube
from conftest import SPECS, provide_volume, run_cli
from raykube.backends.kuberay.backend import KubeRayBackend
from raykube.errors import BackendError, ClusterNotFound, ReadyTimeout, ScaleError, SpecError
from raykube.specs.cluster import load_spec
from raykube.waiting import wait_for

pytestmark = pytest.mark.k8s


def spec_in(namespace: str, **changes: Any) -> raykube.ClusterSpec:
    spec = load_spec(SPECS / "kube.yaml")
    spec.namespace = namespace
    for key, value in changes.items():
        setattr(spec, key, value)
    return spec


def pods(namespace: str) -> list[Any]:
    from kubernetes import client

    return list(client.CoreV1Api().list_namespaced_pod(namespace).items)


def test_up_status_scale_down_with_gpu_group(namespace: str) -> None:
    provide_volume(namespace, "rk-kube-storage")
    cluster = raykube.up(spec_in(namespace), backend="kuberay", timeout=120)
    status = cluster.status()
    assert status.is_ready and status.head_ready
    assert (status.group("cpu").ready, status.group("gpu").ready) == (1, 1)

    by_group = {p.metadata.labels.get("ray.io/group"): p for p in pods(namespace)}
    gpu_pod = by_group["gpu"]
    limits = gpu_pod.spec.containers[0].resources.limits
    assert limits["nvidia.com/gpu"] == "4"
    assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule"
               for t in gpu_pod.spec.tolerations)
    assert gpu_pod.spec.node_name.startswith("gpu-node-"), "GPU pods land on GPU nodes"
    assert by_group["cpu"].spec.node_name.startswith("cpu-node-"), "CPU pods stay off them"
    mounts = {m.mount_path for m in gpu_pod.spec.containers[0].volume_mounts}
    assert "/mnt/checkpoints" in mounts

    from kubernetes import client

    raw = client.CustomObjectsApi().get_namespaced_custom_object(
        "ray.io", "v1", namespace, "rayclusters", "rk-kube")
    conditions = {c["type"]: c["status"] for c in raw["status"]["conditions"]}
    assert conditions["HeadPodReady"] == "True"
    assert conditions["RayClusterProvisioned"] == "True"

    status = cluster.scale("gpu", 3)
    gpu_pods = [p for p in pods(namespace) if p.metadata.labels.get("ray.io/group") == "gpu"
                and p.status.phase == "Running"]
    assert len(gpu_pods) == 3 and all(p.spec.node_name.startswith("gpu-node-") for p in gpu_pods)
    status = cluster.scale("gpu", 1)
    assert status.group("gpu").ready == 1
    with pytest.raises(ScaleError, match="maxReplicas 3"):
        cluster.scale("gpu", 4)

    cluster.down()
    assert [p for p in pods(namespace) if p.metadata.deletion_timestamp is None] == []
    with pytest.raises(ClusterNotFound):
        KubeRayBackend(namespace=namespace).status("rk-kube")


def test_token_secret_and_network_policy_are_made_with_the_cluster_and_go_with_it(
        namespace: str) -> None:
    from kubernetes import client

    core, networking = client.CoreV1Api(), client.NetworkingV1Api()
    spec = spec_in(namespace, storage=None, network_policy=True)
    cluster = raykube.up(spec, backend="kuberay", timeout=120)
    secret = core.read_namespaced_secret("rk-kube-ray-token", namespace)
    assert len(secret.data["auth_token"]) > 40 and secret.metadata.labels == {
        "app.kubernetes.io/managed-by": "raykube"}
    policy = networking.read_namespaced_network_policy("rk-kube-ray", namespace)
    assert policy.spec.pod_selector.match_labels == {"ray.io/cluster": "rk-kube"}
    assert cluster.status().is_ready, "raykube's own status reads the head with the token"
    cluster.down()
    assert not core.list_namespaced_secret(namespace, field_selector=(
        "metadata.name=rk-kube-ray-token")).items
    assert not networking.list_namespaced_network_policy(namespace).items


def test_a_named_token_secret_must_exist_and_nothing_is_left_half_made(namespace: str) -> None:
    from kubernetes import client

    spec = spec_in(namespace, storage=None)
    spec.auth_options.secret_name = "team-token"
    with pytest.raises(SpecError, match="no such Secret"):
        raykube.up(spec, backend="kuberay", timeout=60)
    assert not client.CustomObjectsApi().list_namespaced_custom_object(
        "ray.io", "v1", namespace, "rayclusters")["items"]


def test_second_up_patches_the_cluster(namespace: str) -> None:
    provide_volume(namespace, "rk-kube-storage")
    spec = spec_in(namespace)
    raykube.up(spec, backend="kuberay", timeout=120)
    spec.worker_group("cpu").replicas = 2
    cluster = raykube.up(spec, backend="kuberay", timeout=120)
    assert cluster.status().group("cpu").ready == 2
    cluster.down()


def test_gpu_shortage_is_explained(namespace: str) -> None:
    """16 GPUs exist: a third 8-GPU pod stays Pending, and the timeout says why."""
    provide_volume(namespace, "rk-kube-storage")
    spec = spec_in(namespace)
    gpu = spec.worker_group("gpu")
    gpu.gpu, gpu.cpu, gpu.replicas = 8, 4, 3
    with pytest.raises(ReadyTimeout, match="Insufficient nvidia.com/gpu"):
        raykube.up(spec, backend="kuberay", timeout=20)
    KubeRayBackend(namespace=namespace).down("rk-kube")


def test_missing_storage_is_explained(namespace: str) -> None:
    with pytest.raises(ReadyTimeout, match="unbound immediate PersistentVolumeClaims"):
        raykube.up(spec_in(namespace), backend="kuberay", timeout=10)
    KubeRayBackend(namespace=namespace).down("rk-kube")


def test_server_side_validation_error_names_the_field(namespace: str) -> None:
    from raykube.render.cluster import render_raycluster

    manifest = render_raycluster(spec_in(namespace, storage=None))
    manifest["spec"]["enableInTreeAutoscaling"] = True
    manifest["spec"]["autoscalerOptions"] = {"upscalingMode": "Fast"}  # not in the CRD's enum
    backend = KubeRayBackend(namespace=namespace)
    with pytest.raises(SpecError, match=r"422") as caught:
        backend.kube.apply(manifest)
    assert "spec.autoscalerOptions.upscalingMode" in caught.value.message
    assert "Fast" in caught.value.message


def kubeconfig_variant(kube: dict[str, str], tmp_path: Path, *, token: str | None = None,
                       server: str | None = None) -> str:
    config = yaml.safe_load(Path(kube["KUBECONFIG"]).read_text())
    if token is not None:
        for user in config["users"]:
            user["user"] = {"token": token}
    if server is not None:
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = server
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_bad_credentials_rbac_and_unreachable(kube: dict[str, str], namespace: str,
                                              tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec_in(namespace, storage=None).to_yaml())

    bad = kubeconfig_variant(kube, tmp_path, token="not-a-token")
    result = run_cli("up", "--kube", str(spec_file), env={"KUBECONFIG": bad})
    assert result.returncode == 8 and "rejected the credentials (401)" in result.stderr
    assert "Traceback" not in result.stderr

    kubectl = str(Path(kube["RAYKUBE_K8S_BIN"]) / "kubectl")
    subprocess.run([kubectl, "-n", namespace, "create", "serviceaccount", "nobody"],
                   check=True, capture_output=True, env={**os.environ, **kube})
    token = subprocess.run([kubectl, "-n", namespace, "create", "token", "nobody"], check=True,
                           capture_output=True, text=True, env={**os.environ, **kube}).stdout
    denied = kubeconfig_variant(kube, tmp_path, token=token.strip())
    result = run_cli("up", "--kube", str(spec_file), env={"KUBECONFIG": denied})
    assert result.returncode == 8 and "forbidden by RBAC (403)" in result.stderr

    closed = kubeconfig_variant(kube, tmp_path, server="https://127.0.0.1:9")
    result = run_cli("status", "--kube", "-n", namespace, "rk-kube", env={"KUBECONFIG": closed})
    assert result.returncode == 8 and "unreachable" in result.stderr

    result = run_cli("status", "--kube", "-n", namespace, "ghost")
    assert result.returncode == 3 and "does not exist" in result.stderr


def test_conflict_on_stale_resource_version(namespace: str) -> None:
    from kubernetes import client

    from raykube.backends.kuberay.client import translate
    from raykube.render.cluster import render_raycluster

    custom = client.CustomObjectsApi()
    body = render_raycluster(spec_in(namespace, storage=None))
    created = custom.create_namespaced_custom_object("ray.io", "v1", namespace, "rayclusters",
                                                     body)
    stale = dict(created)
    custom.patch_namespaced_custom_object("ray.io", "v1", namespace, "rayclusters", "rk-kube",
                                          {"metadata": {"labels": {"touched": "yes"}}})
    with pytest.raises(Exception) as caught:
        custom.replace_namespaced_custom_object("ray.io", "v1", namespace, "rayclusters",
                                                "rk-kube", stale)
    error = translate(caught.value, f"RayCluster {namespace}/rk-kube")
    assert isinstance(error, BackendError) and error.retryable and "conflict (409)" in error.message
    KubeRayBackend(namespace=namespace).down("rk-kube")


def test_rayjob_gets_its_ephemeral_cluster(namespace: str) -> None:
    from kubernetes import client

    from raykube.render.rayjob import render_rayjob
    from raykube.specs.job import RayJobSpec

    job = RayJobSpec(name="digits", namespace=namespace, entrypoint="python -c 'print(1)'",
                     cluster="unused.yaml")
    manifest = render_rayjob(job, spec_in(namespace, storage=None))
    custom = client.CustomObjectsApi()
    custom.create_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs", manifest)

    def cluster_of_job() -> str | None:
        raw = custom.get_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs", "digits")
        return raw.get("status", {}).get("rayClusterName") or None

    name = wait_for(cluster_of_job, timeout=60, what="the RayJob's RayCluster")
    wait_for(lambda: len([p for p in pods(namespace) if p.status.phase == "Running"]) >= 3,
             timeout=60, what="the ephemeral cluster's head and workers")
    raw = custom.get_namespaced_custom_object("ray.io", "v1", namespace, "rayclusters", name)
    assert raw["metadata"]["ownerReferences"][0]["kind"] == "RayJob"
    groups = {g["groupName"]: g for g in raw["spec"]["workerGroupSpecs"]}
    assert groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"][
        "nvidia.com/gpu"] == "4"
    custom.delete_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs", "digits")


def test_rayservice_and_its_disruption_budget_cover_the_serving_workers(namespace: str) -> None:
    from kubernetes import client

    from raykube.render.rayservice import render_disruption_budget, render_rayservice
    from raykube.specs.serve import parse_serve_spec
    from raykube.waiting import wait_for

    serve = parse_serve_spec({
        "kind": "Serve", "name": "digits", "framework": "torch",
        "predictor": "digits_serving:TorchDigits", "replicas": 1,
        "versions": [{"version": "v1", "checkpoint": "/storage/ckpt"}],
    })
    cluster = spec_in(namespace, storage=None)
    client.CustomObjectsApi().create_namespaced_custom_object(
        "ray.io", "v1", namespace, "rayservices", render_rayservice(serve, cluster))
    budget = render_disruption_budget(serve, cluster)
    policy = client.PolicyV1Api()
    policy.create_namespaced_pod_disruption_budget(namespace, budget)
    workers = sum(g.replicas for g in cluster.worker_group_specs)

    def budget_status() -> Any:
        status = policy.read_namespaced_pod_disruption_budget(
            budget["metadata"]["name"], namespace).status
        return status if status and status.expected_pods == workers \
            and status.current_healthy == workers else None

    # The operator builds the RayService's RayCluster; the disruption controller counts the
    # worker pods the budget's selector matches and how many may be evicted.
    status = wait_for(budget_status, timeout=90, what="the PDB covering every worker pod")
    assert status.disruptions_allowed == workers - 1
    labelled = [p for p in pods(namespace)
                if (p.metadata.labels or {}).get("raykube.io/service") == "digits"]
    assert len(labelled) == workers + 1  # and the head


def test_port_forward_reaches_the_head_pod_through_the_api_server(namespace: str) -> None:
    """raykube's own port-forward (pods/portforward over the API server, one stream per
    connection) reaches the Ray dashboard running in the head pod."""
    import urllib.error
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    import ray

    raykube.up(spec_in(namespace, storage=None), backend="kuberay", timeout=180)
    backend = KubeRayBackend(namespace=namespace)
    forward, endpoints = backend.port_forward("rk-kube")
    try:
        assert endpoints.dashboard_url.startswith("http://127.0.0.1:")

        assert endpoints.auth_token_path, "the cluster has token auth; the forward has its token"
        token = Path(endpoints.auth_token_path).read_text().strip()

        def version(_: int) -> str:
            request = urllib.request.Request(endpoints.dashboard_url + "/api/version",
                                             headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=30) as answer:
                return str(json.loads(answer.read())["ray_version"])

        with pytest.raises(urllib.error.HTTPError) as refused:  # no token, no answer
            urllib.request.urlopen(endpoints.dashboard_url + "/api/version", timeout=30)
        assert refused.value.code == 401

        with ThreadPoolExecutor(4) as pool:  # each connection gets its own stream
            assert list(pool.map(version, range(8))) == [ray.__version__] * 8
    finally:
        forward.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(endpoints.dashboard_url + "/api/version", timeout=5)
    with pytest.raises(ClusterNotFound):
        backend.port_forward("no-such-cluster")


def test_calls_ride_out_an_api_server_restart(kube: dict[str, str], namespace: str) -> None:
    """The API server killed, and started again while a call waits on it (as in a control
    plane upgrade): the call gets its answer instead of an error. Last in this file: the
    restarted server serves the tests after it."""
    from raykube.backends.kuberay.client import KubeClient
    from support.restart import ProcessImage

    client = KubeClient.load(namespace=namespace)
    assert client.list("Pod") == []  # this client has reached the server
    pid_file = Path(kube["RAYKUBE_K8S_STATE"]) / "pids"
    lines = pid_file.read_text().splitlines()
    pid = next(int(line.split()[0]) for line in lines if line.split()[1] == "kube-apiserver")
    server = ProcessImage.of(pid)
    server.kill(group=True)
    answers: list[Any] = []
    caller = threading.Thread(target=lambda: answers.append(client.list("Pod")), daemon=True)
    caller.start()  # refused now: retried
    with open(Path(kube["RAYKUBE_K8S_STATE"]) / "kube-apiserver.log", "ab") as log:
        restarted = server.start_again(log)
    # kube-down stops what the pids file names: the new server, not the dead one.
    pid_file.write_text("\n".join(f"{restarted.pid} kube-apiserver" if line.split()[1] ==
                                   "kube-apiserver" else line for line in lines) + "\n")
    caller.join(timeout=60)
    assert answers == [[]], "the call waited out the restart and got its answer"


def test_manifests_name_no_namespace_so_kubectl_apply_n_places_them(
        kube: dict[str, str], namespace: str) -> None:
    """`raykube manifest | kubectl apply -n NS -f -` works for every shipped spec kind: the
    manifests leave metadata.namespace out unless the spec sets one, as KubeRay's samples do."""
    kubectl = str(Path(kube["RAYKUBE_K8S_BIN"]) / "kubectl")
    for spec in ("clusters/gpu.yaml", "jobs/train-digits.rayjob.yaml",
                 "jobs/digits.rayservice.yaml"):
        manifest = run_cli("manifest", spec)
        assert manifest.returncode == 0, manifest.stderr
        assert all("namespace" not in (o.get("metadata") or {})
                   for o in yaml.safe_load_all(manifest.stdout)), spec
        applied = subprocess.run([kubectl, "apply", "-n", namespace, "--dry-run=server", "-f",
                                  "-"], input=manifest.stdout, capture_output=True, text=True,
                                 timeout=60)
        assert applied.returncode == 0, (spec, applied.stderr)
        assert "(server dry run)" in applied.stdout


def test_dry_run_server_checks_everything_and_creates_nothing(namespace: str) -> None:
    from kubernetes import client

    up = run_cli("up", "--kube", "-n", namespace, "--dry-run=server", str(SPECS / "kube.yaml"))
    assert up.returncode == 0, up.stderr
    assert f"RayCluster {namespace}/rk-kube: valid" in up.stdout
    assert f"Secret {namespace}/rk-kube-ray-token: valid" in up.stdout
    job = run_cli("job", "apply", "--kube", "-n", namespace, "--dry-run=server",
                  "jobs/train-digits.rayjob.yaml")
    assert job.returncode == 0 and f"RayJob {namespace}/train-digits: valid" in job.stdout, \
        job.stderr
    service = run_cli("serve", "deploy", "--kube", "-n", namespace, "--dry-run=server",
                      "jobs/digits.rayservice.yaml")
    assert service.returncode == 0, service.stderr
    assert f"RayService {namespace}/" in service.stdout
    custom = client.CustomObjectsApi()
    for plural in ("rayclusters", "rayjobs", "rayservices"):
        assert custom.list_namespaced_custom_object("ray.io", "v1", namespace, plural)[
            "items"] == [], f"a dry run created {plural}"
    assert client.CoreV1Api().list_namespaced_secret(
        namespace, label_selector="app.kubernetes.io/managed-by=raykube").items == []

    spec = spec_in(namespace, storage=None)
    spec.head_group_spec.cpu = "1e9"  # a quantity the server takes, more than any node has
    checked = raykube.cluster.dry_run(spec, namespace=namespace)
    assert checked[-1] == f"RayCluster {namespace}/rk-kube"


def test_a_spec_of_another_namespace_is_refused_before_anything_is_sent(namespace: str) -> None:
    with pytest.raises(SpecError, match="namespace is 'elsewhere'"):
        raykube.up(spec_in("elsewhere"), backend="kuberay", namespace=namespace, timeout=10)
