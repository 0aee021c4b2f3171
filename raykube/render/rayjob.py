"""Job spec -> a KubeRay ``ray.io/v1`` RayJob (pure: nothing here touches a cluster)."""

from __future__ import annotations

from typing import Any

import yaml

from raykube.render.cluster import render_raycluster
from raykube.render.meta import metadata
from raykube.specs.cluster import ClusterSpec
from raykube.specs.job import RayJobSpec


def render_rayjob(job: RayJobSpec, cluster: ClusterSpec | None) -> dict[str, Any]:
    """The RayJob for ``job``; ``cluster`` is the ephemeral cluster's spec (None with a selector).
    """
    spec: dict[str, Any] = {
        "entrypoint": job.entrypoint,
        "submissionMode": job.submission_mode.value,
        "shutdownAfterJobFinishes": job.shutdown_after_job_finishes,
        "ttlSecondsAfterFinished": job.ttl_seconds_after_finished,
        "backoffLimit": job.backoff_limit,
    }
    if job.runtime_env:
        spec["runtimeEnvYAML"] = yaml.safe_dump(job.runtime_env, sort_keys=True)
    if job.active_deadline_seconds:
        spec["activeDeadlineSeconds"] = job.active_deadline_seconds
    if job.entrypoint_num_cpus is not None:
        spec["entrypointNumCpus"] = job.entrypoint_num_cpus
    if job.entrypoint_num_gpus is not None:
        spec["entrypointNumGpus"] = job.entrypoint_num_gpus
    if cluster is not None:
        # KubeRay before v1.5.1 polls the job's status through the dashboard without a token:
        # its clusters run without token auth (README "Security").
        spec["rayClusterSpec"] = render_raycluster(cluster, token_auth=False)["spec"]
    else:
        spec["clusterSelector"] = dict(job.cluster_selector or {})
        spec.pop("shutdownAfterJobFinishes")  # KubeRay forbids it with an existing cluster
        spec.pop("ttlSecondsAfterFinished")
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": metadata(job.name, job.namespace),
        "spec": spec,
    }
