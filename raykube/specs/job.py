"""The job spec: a Ray job described once, for KubeRay's ``ray.io/v1`` RayJob.

Field names are KubeRay's (``entrypoint``, ``submissionMode``, ``shutdownAfterJobFinishes``,
``ttlSecondsAfterFinished``, ``activeDeadlineSeconds``, ``backoffLimit``, ``clusterSelector``);
the job runs either on an ephemeral cluster built from a cluster spec file (``cluster:``) or on
an existing RayCluster (``clusterSelector:``), never both.

Example (``jobs/train-digits.rayjob.yaml``)::

    kind: RayJob
    name: train-digits
    entrypoint: python train_torch.py --epochs 5
    runtimeEnv: {working_dir: "s3://bucket/jobs.zip"}
    cluster: ../clusters/gpu.yaml
    shutdownAfterJobFinishes: true
    ttlSecondsAfterFinished: 300
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from raykube.errors import SpecError
from raykube.specs.base import SpecModel, check_dns_label, load, parse, spec_kind
from raykube.specs.batch import BatchPredictSpec, load_batch_spec
from raykube.specs.cluster import ClusterSpec, load_spec


class SubmissionMode(StrEnum):
    """How KubeRay submits the entrypoint (RayJob ``submissionMode``)."""

    K8S_JOB = "K8sJobMode"
    HTTP = "HTTPMode"
    INTERACTIVE = "InteractiveMode"
    SIDECAR = "SidecarMode"


class RayJobSpec(SpecModel):
    """A Ray job for KubeRay, on an ephemeral cluster or an existing one."""

    kind: Literal["RayJob"] = Field("RayJob", description="Always RayJob.")
    name: str = Field(..., description="The RayJob's metadata.name.")
    namespace: str | None = Field(
        None, description="Kubernetes namespace; left out of manifests when unset, so "
        "`kubectl apply -n` places them. raykube then uses -n, else the kubeconfig context's, "
        "else (in a pod) its service account's.")
    entrypoint: str = Field(..., min_length=1, description="The command the job runs.")
    runtime_env: dict[str, Any] = Field(
        default_factory=dict, alias="runtimeEnv",
        description="Ray runtime env (working_dir as a remote URI, pip, env_vars, ...).",
    )
    submission_mode: SubmissionMode = Field(
        SubmissionMode.K8S_JOB, alias="submissionMode",
        description="K8sJobMode (a submitter Job), HTTPMode, InteractiveMode or SidecarMode.",
    )
    cluster: str | None = Field(
        None, description="Cluster spec file (relative to this file) for an ephemeral cluster.",
    )
    cluster_selector: dict[str, str] | None = Field(
        None, alias="clusterSelector",
        description="Labels of an existing RayCluster, e.g. {ray.io/cluster: gpu}.",
    )
    shutdown_after_job_finishes: bool = Field(
        True, alias="shutdownAfterJobFinishes",
        description="Delete the ephemeral cluster when the job ends.",
    )
    ttl_seconds_after_finished: int = Field(
        0, ge=0, alias="ttlSecondsAfterFinished",
        description="Seconds to keep the cluster after the job ends (with shutdown).",
    )
    active_deadline_seconds: int | None = Field(
        None, gt=0, alias="activeDeadlineSeconds", description="Fail the job after this long.",
    )
    backoff_limit: int = Field(0, ge=0, alias="backoffLimit", description="Retries of the job.")
    entrypoint_num_cpus: float | None = Field(
        None, ge=0, alias="entrypointNumCpus", description="CPUs reserved for the entrypoint.",
    )
    entrypoint_num_gpus: float | None = Field(
        None, ge=0, alias="entrypointNumGpus", description="GPUs reserved for the entrypoint.",
    )

    @field_validator("name", "namespace")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return None if value is None else check_dns_label(value, "name")

    @model_validator(mode="after")
    def _one_cluster(self) -> RayJobSpec:
        if (self.cluster is None) == (self.cluster_selector is None):
            raise ValueError(
                "give exactly one of cluster (a cluster spec file for an ephemeral cluster) "
                "and clusterSelector (labels of an existing RayCluster)"
            )
        if self.cluster_selector is not None and self.submission_mode is SubmissionMode.INTERACTIVE:
            raise ValueError("InteractiveMode creates its own cluster: use cluster:, not "
                             "clusterSelector")
        return self


def load_job_spec(path: str | Path) -> tuple[RayJobSpec, ClusterSpec | None]:
    """Read a RayJob spec (or a batch spec, ``kind: BatchPredict``, as the RayJob that runs it)
    and, for an ephemeral cluster, the cluster spec it names.

    Raises:
        SpecError: missing file, malformed YAML, invalid fields, or an invalid cluster spec.
    """
    file = Path(path)
    if spec_kind(file) == "BatchPredict":
        job = batch_rayjob(load_batch_spec(file))
        return job, load_spec(job.cluster) if job.cluster else None
    job = load(file, RayJobSpec, "job spec", "jobs/train-digits.rayjob.yaml")
    cluster = load_spec(file.parent / job.cluster) if job.cluster else None
    return job, cluster


def batch_rayjob(batch: BatchPredictSpec) -> RayJobSpec:
    """The RayJob that runs batch spec ``batch`` on Kubernetes: ``raykube batch run`` as its
    entrypoint, the predictor's code (a URI) as its working_dir.

    Raises:
        SpecError: a local workingDir (the pods cannot read it), or no cluster named.
    """
    where = f"batch job {batch.name}"
    if batch.uses_local_working_dir():
        raise SpecError(
            f"{where}: workingDir {batch.working_dir} is a local folder, which KubeRay pods "
            "cannot read",
            "give workingDir as a URI the pods can fetch (https://.../code.zip, s3://...), or "
            "put the code in the image and drop workingDir")
    if not batch.cluster and not batch.cluster_selector:
        raise SpecError(f"{where}: a RayJob needs a cluster: set cluster: (a cluster spec file "
                        "for an ephemeral cluster) or clusterSelector: (an existing RayCluster)",
                        "e.g. cluster: ../clusters/local.yaml")
    runtime_env = {"working_dir": batch.working_dir} if batch.working_dir else {}
    data: dict[str, Any] = {
        "kind": "RayJob", "name": batch.name, "entrypoint": batch.rayjob_entrypoint(),
        "runtimeEnv": runtime_env,
    }
    if batch.namespace:
        data["namespace"] = batch.namespace
    if batch.cluster:
        data["cluster"] = batch.cluster
    else:
        data["clusterSelector"] = batch.cluster_selector
    return parse(RayJobSpec, data, source=where, what="job spec",
                 example="jobs/train-digits.rayjob.yaml")

