"""Kubernetes: up to Ray-ready on KubeRay against the local backend for the same spec, the
autoscaler's reaction on KubeRay (demand -> new pod joined Ray -> work running), and job
submission through raykube's port-forward against the same Jobs API reached directly.

Runs on the control plane of ``../shared/k8s`` with the pod runner (``tests/support``), which
runs Ray in KubeRay's pods on this machine; the local figures are measured in the same run.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.cluster_ops import autoscaler_reaction, autoscaling_spec, fixed_spec
from raykube.waiting import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def unavailable() -> str | None:
    """Why this section cannot run here, or None."""
    from support.kube_dev import available

    return available()


def _in_namespace(spec: Any, namespace: str) -> Any:
    spec.namespace = namespace
    return spec


def up_seconds(backend: str, namespace: str) -> float:
    """``raykube.up`` of the fixed spec until every worker joined Ray, then down (not timed)."""
    import raykube

    spec = _in_namespace(fixed_spec(f"rk-bench-{backend}"), namespace)
    started = time.perf_counter()
    cluster = raykube.up(spec, backend=backend, timeout=300)
    seconds = time.perf_counter() - started
    cluster.down(timeout=120)
    return seconds


def job_latency(namespace: str, repeats: int) -> dict[str, float]:
    """Submit -> SUCCEEDED of a trivial job on a KubeRay cluster: through raykube's
    port-forward (what a laptop uses) vs the head pod's dashboard at its pod IP (what a pod in
    the cluster would use)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    import raykube

    spec = _in_namespace(fixed_spec("rk-bench-jobs"), namespace)
    cluster = raykube.up(spec, backend="kuberay", timeout=300)
    try:
        from kubernetes import client

        head = client.CoreV1Api().list_namespaced_pod(
            namespace, label_selector=f"ray.io/cluster={spec.name},ray.io/node-type=head"
        ).items[0]
        clients = {
            "forwarded": JobSubmissionClient(cluster.endpoints.dashboard_url),
            "direct": JobSubmissionClient(f"http://{head.status.pod_ip}:8265"),
        }
        times: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(repeats):
            for name, sdk in clients.items():
                started = time.perf_counter()
                job_id = sdk.submit_job(entrypoint="python -c pass")
                wait_for(lambda s=sdk, j=job_id: s.get_job_status(j) == JobStatus.SUCCEEDED,
                         timeout=120, interval=0.05, what="the job")
                times[name].append(time.perf_counter() - started)
        forwarded = statistics.median(times["forwarded"])
        direct = statistics.median(times["direct"])
        return {"k8s_job_forwarded_s": forwarded, "k8s_job_direct_s": direct,
                "k8s_job_forward_ratio": forwarded / direct}
    finally:
        cluster.down(timeout=120)


def autoscaler_on_kubernetes(namespace: str) -> dict[str, float]:
    """The autoscaler's reaction on KubeRay: demand -> new pod joined Ray -> task running."""
    import raykube

    spec = _in_namespace(autoscaling_spec("rk-bench-autoscale", idle_seconds=30), namespace)
    cluster = raykube.up(spec, backend="kuberay", timeout=300)
    try:
        reaction = autoscaler_reaction(cluster, wait_removed=False)
        return {f"k8s_{key}": seconds for key, seconds in reaction.items()}
    finally:
        cluster.down(timeout=120)


def bench_kubernetes(*, repeats: int, quick: bool, progress: Any) -> dict[str, Any]:
    """Every Kubernetes figure, on a control plane of its own (or the caller's)."""
    from kubernetes import client, config

    from support.kube_dev import control_plane

    state = Path(tempfile.mkdtemp(prefix="rk-bench-k8s-"))
    with control_plane(state) as exported:
        previous = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = exported["KUBECONFIG"]
        config.load_kube_config(config_file=exported["KUBECONFIG"])
        namespace = f"rk-bench-{os.urandom(2).hex()}"
        client.CoreV1Api().create_namespace({"metadata": {"name": namespace}})
        try:
            kube_ups, local_ups = [], []
            for repeat in range(repeats):
                progress(f"kubernetes: up to Ray-ready ({repeat + 1}/{repeats})")
                kube_ups.append(up_seconds("kuberay", namespace))
                local_ups.append(up_seconds("local", namespace))
            result: dict[str, Any] = {
                "k8s_up_s": statistics.median(kube_ups),
                "local_up_s": statistics.median(local_ups),
            }
            result["k8s_up_ratio"] = result["k8s_up_s"] / result["local_up_s"]
            progress("kubernetes: job submission through the port-forward")
            result.update(job_latency(namespace, 2 if quick else 5))
            progress("kubernetes: autoscaler reaction")
            result.update(autoscaler_on_kubernetes(namespace))
            return result
        finally:
            client.CoreV1Api().delete_namespace(namespace)
            if previous is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = previous
