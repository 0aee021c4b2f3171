"""RayJobs on Kubernetes: create one from a job spec, follow KubeRay's status to the end, and
say why it failed.

KubeRay does the work (creates the ephemeral cluster or finds the selected one, submits the
entrypoint through a submitter Job in K8sJobMode or over HTTP in HTTPMode, deletes the cluster
after); raykube reads ``status.jobDeploymentStatus`` and ``status.jobStatus`` and, for a job
that ended FAILED or STOPPED, raises :class:`JobFailed` with KubeRay's reason and message and
the last lines the job printed (the submitter pod's log, which carries the driver's output).

Example::

    job, cluster = load_job_spec("jobs/train-digits.rayjob.yaml")
    RayJobs(load_clients(None, None)).run(job, cluster, timeout=1800)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raykube.backends.kuberay.kube import (
    RAY_GROUP,
    RAY_VERSION,
    KubeClients,
    get_ray_object,
    translate,
)
from raykube.errors import JobFailed
from raykube.job_spec import RayJobSpec, render_rayjob
from raykube.progress import Progress
from raykube.spec import ClusterSpec
from raykube.waiting import wait_for

TERMINAL_DEPLOYMENT = ("Complete", "Failed")
"""``jobDeploymentStatus`` values after which KubeRay does nothing more for the job."""


@dataclass(frozen=True)
class RayJobStatus:
    """A RayJob as KubeRay reports it."""

    name: str
    deployment_status: str
    job_status: str
    job_id: str
    cluster: str
    reason: str
    message: str

    @property
    def finished(self) -> bool:
        """Whether KubeRay is done with the job (or the job itself has ended)."""
        return self.deployment_status in TERMINAL_DEPLOYMENT or self.job_status in (
            "SUCCEEDED", "FAILED", "STOPPED")

    @property
    def succeeded(self) -> bool:
        """Whether the entrypoint ended SUCCEEDED."""
        return self.job_status == "SUCCEEDED"


class RayJobs:
    """Creates and follows RayJobs in one namespace."""

    def __init__(self, kube: KubeClients, namespace: str | None = None) -> None:
        self.kube = kube
        self.namespace = namespace or kube.namespace

    def create(self, job: RayJobSpec, cluster: ClusterSpec | None) -> str:
        """Create the RayJob; return its name.

        Raises:
            BackendError/SpecError: the API refused it (exists: 409; invalid: 422; RBAC: 403).
        """
        manifest = render_rayjob(job, cluster)
        manifest["metadata"]["namespace"] = self.namespace
        try:
            self.kube.custom.create_namespaced_custom_object(
                RAY_GROUP, RAY_VERSION, self.namespace, "rayjobs", manifest)
        except Exception as exc:  # noqa: BLE001 - translated
            raise translate(exc, f"RayJob {self.namespace}/{job.name}") from exc
        return job.name

    def status(self, name: str) -> RayJobStatus:
        """KubeRay's view of RayJob ``name`` now."""
        raw = get_ray_object(self.kube, self.namespace, "rayjobs", name)
        status: dict[str, Any] = raw.get("status") or {}
        return RayJobStatus(
            name=name, deployment_status=status.get("jobDeploymentStatus", ""),
            job_status=status.get("jobStatus", ""), job_id=status.get("jobId", ""),
            cluster=status.get("rayClusterName", ""), reason=status.get("reason", ""),
            message=status.get("message", ""),
        )

    def submitter_log(self, name: str, lines: int = 20) -> str:
        """The last lines of the K8sJobMode submitter pod's log ('' when there is none)."""
        try:
            pods = self.kube.core.list_namespaced_pod(
                self.namespace, label_selector=f"job-name={name}").items
            if not pods:
                return ""
            newest = max(pods, key=lambda p: p.metadata.creation_timestamp)
            return str(self.kube.core.read_namespaced_pod_log(
                newest.metadata.name, self.namespace, tail_lines=lines))
        except Exception:  # noqa: BLE001 - a courtesy for the error message
            return ""

    def wait(self, name: str, *, timeout: float) -> RayJobStatus:
        """Follow the RayJob until it ends, with progress.

        Raises:
            JobFailed: it ended FAILED or STOPPED (KubeRay's reason, message and the job's
            last output in the message). ReadyTimeout: still running after ``timeout``.
        """
        progress = Progress()
        seen: list[str] = []

        def ended() -> RayJobStatus | None:
            status = self.status(name)
            state = f"{status.deployment_status or 'New'}/{status.job_status or '-'}"
            if not seen or seen[-1] != state:
                seen.append(state)
                progress.say(f"RayJob {self.namespace}/{name}: deployment "
                             f"{status.deployment_status or 'New'}, job {status.job_status or '-'}")
            return status if status.finished else None

        status = wait_for(ended, timeout=timeout, what=f"RayJob {self.namespace}/{name}",
                          interval=1.0)
        if not status.succeeded:
            output = self.submitter_log(name)
            detail = f"{status.reason}: {status.message}".strip(": ")
            raise JobFailed(
                f"RayJob {self.namespace}/{name} ended {status.job_status or status.deployment_status}"
                + (f" ({detail})" if detail else "")
                + (f"\n--- last output ---\n{output.rstrip()}" if output else ""),
                f"`kubectl -n {self.namespace} describe rayjob {name}`; the Ray job id is "
                f"{status.job_id or 'not assigned'}",
            )
        return status

    def run(self, job: RayJobSpec, cluster: ClusterSpec | None, *, timeout: float
            ) -> RayJobStatus:
        """Create the RayJob and wait until it ends (see :meth:`wait`)."""
        return self.wait(self.create(job, cluster), timeout=timeout)
