"""RayJobs on Kubernetes: create one from a job spec, follow KubeRay's status to the end, and
say why it failed.

KubeRay does the work (creates the ephemeral cluster or finds the selected one, submits the
entrypoint through a submitter Job in K8sJobMode or over HTTP in HTTPMode, deletes the cluster
after); raykube reads ``status.jobDeploymentStatus`` and ``status.jobStatus`` and, for a job
that ended FAILED or STOPPED, raises :class:`JobFailed` with KubeRay's reason and message and
the last lines the job printed (the submitter pod's log, which carries the driver's output).

Example::

    status = raykube.apply_rayjob("jobs/train-digits.rayjob.yaml", timeout=1800)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from raykube.backends.kuberay.backend import auth_secret
from raykube.backends.kuberay.state import CLUSTER_LABEL
from raykube.backends.kuberay.client import KubeClient
from raykube.errors import JobError, JobFailed, RaykubeError
from raykube.progress import Progress
from raykube.render.rayjob import render_rayjob
from raykube.specs.cluster import ClusterSpec
from raykube.specs.job import RayJobSpec, load_job_spec
from raykube.submission.jobs import JobState
from raykube.waiting import wait_for


class DeploymentStatus(StrEnum):
    """KubeRay's ``jobDeploymentStatus`` of a RayJob."""

    NEW = ""
    INITIALIZING = "Initializing"
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"
    SUSPENDING = "Suspending"
    SUSPENDED = "Suspended"
    RETRYING = "Retrying"
    WAITING = "Waiting"
    VALIDATION_FAILED = "ValidationFailed"

    @classmethod
    def of(cls, value: str) -> DeploymentStatus:
        """The status for ``value``; one this raykube does not know reads as RUNNING."""
        try:
            return cls(value)
        except ValueError:
            return cls.RUNNING

    @property
    def is_terminal(self) -> bool:
        """Whether KubeRay does nothing more for the job."""
        return self in (DeploymentStatus.COMPLETE, DeploymentStatus.FAILED,
                        DeploymentStatus.VALIDATION_FAILED)


@dataclass(frozen=True)
class RayJobStatus:
    """A RayJob as KubeRay reports it."""

    namespace: str
    name: str
    deployment_status: DeploymentStatus
    job_status: JobState | None
    job_id: str
    cluster: str
    reason: str
    message: str

    @property
    def finished(self) -> bool:
        """Whether KubeRay is done with the job (or the job itself has ended)."""
        return self.deployment_status.is_terminal or bool(
            self.job_status and self.job_status.is_terminal)

    @property
    def succeeded(self) -> bool:
        """Whether the entrypoint ended SUCCEEDED."""
        return self.job_status is JobState.SUCCEEDED


class RayJobs:
    """Creates and follows RayJobs in one namespace."""

    def __init__(self, kube: KubeClient, namespace: str | None = None) -> None:
        self.kube = kube
        self.namespace = namespace or kube.namespace

    def create(self, job: RayJobSpec, cluster: ClusterSpec | None, *,
               dry_run: bool = False) -> str:
        """Create the RayJob (``dry_run``: have the server check it and store nothing); return
        its name.

        Raises:
            BackendError/SpecError: the API refused it (exists: 409; invalid: 422; RBAC: 403).
        """
        if job.cluster_selector is not None:
            self.check_selected(job.cluster_selector)
        manifest = render_rayjob(job, cluster)
        manifest["metadata"]["namespace"] = self.namespace
        self.kube.create(manifest, dry_run=dry_run)
        return job.name

    def check_selected(self, selector: dict[str, str]) -> None:
        """Refuse a RayJob for an existing RayCluster with Ray token auth: the KubeRay operator
        before v1.5.1 submits it and reads its status through the dashboard without a token,
        so it would fail after its submitter ran.

        Raises:
            JobError: naming the cluster and what works instead.
        """
        if CLUSTER_LABEL in selector:  # KubeRay reads this key as the RayCluster's name
            named = self.kube.get("RayCluster", selector[CLUSTER_LABEL], self.namespace,
                                  missing_ok=True)
            selected = [named] if named else []
        else:
            labels = ",".join(f"{k}={v}" for k, v in selector.items())
            selected = self.kube.list("RayCluster", self.namespace, labels=labels)
        for found in selected:
            if auth_secret(found):
                name = found["metadata"]["name"]
                raise JobError(
                    f"RayCluster {self.namespace}/{name} has Ray token auth, and the KubeRay "
                    "operator (before v1.5.1) cannot send a token to submit a RayJob or to "
                    "read its status",
                    f"submit with `raykube job submit --kube --cluster {name} -- ...` "
                    "(raykube brings the token), or select a cluster with authOptions.mode: "
                    "disabled",
                )

    def status(self, name: str) -> RayJobStatus:
        """KubeRay's view of RayJob ``name`` now."""
        status: dict[str, Any] = self.kube.get("RayJob", name, self.namespace).get("status") or {}
        job_status = status.get("jobStatus") or ""
        return RayJobStatus(
            namespace=self.namespace, name=name, deployment_status=DeploymentStatus.of(status.get("jobDeploymentStatus", "")),
            job_status=JobState(job_status) if job_status in JobState.__members__ else None,
            job_id=status.get("jobId", ""), cluster=status.get("rayClusterName", ""),
            reason=status.get("reason", ""), message=status.get("message", ""),
        )

    def submitter_log(self, name: str, lines: int = 20) -> str:
        """The last lines of the K8sJobMode submitter pod's log ('' when there is none)."""
        try:
            pods = self.kube.list("Pod", self.namespace, labels=f"job-name={name}")
            if not pods:
                return ""
            newest = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
            return self.kube.log(newest["metadata"]["name"], self.namespace, tail_lines=lines)
        except RaykubeError:  # a courtesy for the error message
            return ""

    def wait(self, name: str, *, timeout: float) -> RayJobStatus:
        """Follow the RayJob until it ends, with progress.

        Raises:
            JobFailed: it ended FAILED or STOPPED (KubeRay's reason, message and the job's
            last output in the message). ReadyTimeout: still running after ``timeout``.
        """
        progress = Progress()

        def ended() -> RayJobStatus | None:
            status = self.status(name)
            progress.say(f"RayJob {self.namespace}/{name}: deployment "
                         f"{status.deployment_status.value or 'New'}, job "
                         f"{status.job_status.value if status.job_status else '-'}")
            return status if status.finished else None

        status = wait_for(ended, timeout=timeout, what=f"RayJob {self.namespace}/{name}",
                          interval=1.0)
        if not status.succeeded:
            output = self.submitter_log(name)
            detail = f"{status.reason}: {status.message}".strip(": ")
            ended_as = status.job_status.value if status.job_status else (
                status.deployment_status.value)
            raise JobFailed(
                f"RayJob {self.namespace}/{name} ended {ended_as}"
                + (f" ({detail})" if detail else "")
                + (f"\n--- last output ---\n{output.rstrip()}" if output else ""),
                f"`kubectl -n {self.namespace} describe rayjob {name}`; the Ray job id is "
                f"{status.job_id or 'not assigned'}",
            )
        return status


def apply_rayjob(spec: str | Path, *, namespace: str | None = None, wait: bool = True,
                 timeout: float = 3600.0) -> RayJobStatus:
    """Create the KubeRay RayJob a job spec file (``kind: RayJob``) describes, and by default
    follow it to its end.

    Args:
        spec: the job spec file; its ``cluster:`` file (an ephemeral cluster) is read with it.
        namespace: where to create it (default: the spec's).
        wait: follow it until it ends; else return its status at once.
        timeout: seconds to wait.

    Returns:
        The RayJob's status (SUCCEEDED when waited for).

    Raises:
        SpecError: an invalid job or cluster spec (nothing was created).
        JobFailed: it ended FAILED or STOPPED. BackendError: the API refused it.
    """
    job, cluster = load_job_spec(spec)
    rayjobs = RayJobs(KubeClient.load(None, namespace or job.namespace))
    name = rayjobs.create(job, cluster)
    Progress().say(f"RayJob {rayjobs.namespace}/{name} created")
    return rayjobs.wait(name, timeout=timeout) if wait else rayjobs.status(name)


def dry_run_rayjob(spec: str | Path, *, namespace: str | None = None) -> list[str]:
    """Have the API server check the RayJob a job spec file describes (schema, admission,
    RBAC; a selected cluster's token auth as :meth:`RayJobs.check_selected` does) and create
    nothing. Returns ``RayJob namespace/name``.

    Raises:
        SpecError: an invalid spec, or a field the server refused; JobError, BackendError: as
        :func:`apply_rayjob`.
    """
    job, cluster = load_job_spec(spec)
    rayjobs = RayJobs(KubeClient.load(None, namespace or job.namespace))
    return [f"RayJob {rayjobs.namespace}/{rayjobs.create(job, cluster, dry_run=True)}"]
