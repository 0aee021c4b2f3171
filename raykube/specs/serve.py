"""The serve spec: one model service described once, deployed by raykube or rendered for KubeRay.

A service is a predictor class (any framework) loaded from training checkpoints, one or more
*versions* of it (each its own checkpoint) with a share of traffic each, and the Serve settings
every version's replicas get: a fixed ``replicas`` count or ``autoscaling`` bounds, resources per
replica, batching and health checks. Names follow Ray Serve's own settings in camelCase
(``minReplicas``, ``maxReplicas``, ``targetOngoingRequests``, ``maxOngoingRequests``,
``maxBatchSize``, ``batchWaitTimeoutS``, ``healthCheckPeriodS``).

Example (``jobs/digits.serve.yaml``)::

    kind: Serve
    name: digits
    framework: torch
    predictor: digits_serving:TorchDigits
    workingDir: .
    versions:
      - {version: v1, checkpoint: /tmp/raykube-storage/local/digits/checkpoint_..., weight: 100}
    autoscaling: {minReplicas: 1, maxReplicas: 2, targetOngoingRequests: 2}
    resources: {cpus: 0.5}

A rollout is an edit of ``versions``: add v2 with weight 10 (canary), give it 100 and drop v1
(promote), or drop v2 (roll back); ``raykube serve deploy`` applies each step without a failed
request (new versions are up before they get traffic, old ones lose traffic before they go).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from raykube.errors import SpecError
from raykube.specs.base import SpecModel, check_dns_label, load, parse
from raykube.specs.predictor import PredictorSpec, with_working_dir_of



class ServeVersion(SpecModel):
    """One version of the model: a checkpoint and its share of the traffic."""

    version: str = Field(..., description="Version name, e.g. v1 (lower-case letters, digits, -).")
    checkpoint: str = Field(
        ..., min_length=1,
        description="Checkpoint folder on the cluster's storage (TrainResult.checkpoint).",
    )
    weight: int = Field(
        100, ge=0, le=100,
        description="Percent of requests this version answers; all versions' weights sum to 100.",
    )

    @field_validator("version")
    @classmethod
    def _version_name(cls, value: str) -> str:
        return _serve_name(value, "version")


class ServeAutoscaling(SpecModel):
    """Serve's replica autoscaling for every version (Serve ``autoscaling_config``)."""

    min_replicas: int = Field(1, ge=0, alias="minReplicas", description="Fewest replicas.")
    max_replicas: int = Field(..., ge=1, alias="maxReplicas", description="Most replicas.")
    target_ongoing_requests: float = Field(
        2.0, gt=0, alias="targetOngoingRequests",
        description="Requests in flight per replica that Serve scales towards.",
    )
    upscale_delay_s: float = Field(
        3.0, ge=0, alias="upscaleDelayS", description="Seconds of high load before adding one.",
    )
    downscale_delay_s: float = Field(
        10.0, ge=0, alias="downscaleDelayS", description="Seconds of low load before removing one.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> ServeAutoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) is above maxReplicas ({self.max_replicas}): "
                "make minReplicas <= maxReplicas"
            )
        return self


class ServeResources(SpecModel):
    """What each replica asks Ray for (Serve ``ray_actor_options``)."""

    cpus: float = Field(1.0, ge=0, description="CPUs per replica.")
    gpus: float = Field(0.0, ge=0, description="GPUs per replica (fractions share a GPU).")
    accelerator_type: str | None = Field(
        None, alias="acceleratorType",
        description="GPU model the replica needs, e.g. A100 (the cluster spec's acceleratorType).",
    )

    @model_validator(mode="after")
    def _accelerator_needs_gpu(self) -> ServeResources:
        if self.accelerator_type and not self.gpus:
            raise ValueError(
                f"acceleratorType {self.accelerator_type!r} without gpus: set gpus (e.g. 1) "
                "or drop acceleratorType"
            )
        return self


class ServeBatching(SpecModel):
    """Serve's dynamic request batching in each replica (``@serve.batch``)."""

    max_batch_size: int = Field(8, ge=1, alias="maxBatchSize", description="Largest batch.")
    batch_wait_timeout_s: float = Field(
        0.0, ge=0, alias="batchWaitTimeoutS",
        description="Seconds a request waits for others to fill a batch. 0 (default): a batch "
        "is what queued while the last one ran; measured by benchmarks/serving_knobs.py, 10 ms "
        "doubled a lone request's p50 and gained nothing at concurrency 16.",
    )


class RolloutPolicy(SpecModel):
    """How a new version earns its traffic: the steps of its share, and the figures each step
    is judged by (the router's own counts for the new and the stable version over the step)."""

    steps: list[int] = Field(
        default_factory=lambda: [10, 50, 100],
        description="The new version's share (percent) at each step; the last must be 100.")
    step_seconds: float = Field(
        30.0, gt=0, alias="stepSeconds",
        description="Seconds each step lasts at least before it is judged.")
    min_requests: int = Field(
        50, ge=1, alias="minRequests",
        description="Requests the new version must answer in a step before it is judged.")
    step_timeout_seconds: float = Field(
        600.0, gt=0, alias="stepTimeoutSeconds",
        description="Seconds a step may wait for minRequests; then it is judged on what came "
        "(a step without a single request rolls back: nothing vouches for the version).")
    max_error_rate: float = Field(
        0.01, ge=0, le=1, alias="maxErrorRate",
        description="Largest share of the new version's answers that may be 5xx.")
    max_latency_p99_ms: float | None = Field(
        None, gt=0, alias="maxLatencyP99Ms",
        description="Largest p99 latency (router to answer) of the new version, in ms.")
    min_accuracy: float | None = Field(
        None, ge=0, le=1, alias="minAccuracy",
        description="Lowest live accuracy (from feedback) of the new version.")
    max_accuracy_drop: float | None = Field(
        None, ge=0, le=1, alias="maxAccuracyDrop",
        description="How far the new version's live accuracy may fall under the stable "
        "version's over the same step.")
    min_feedback: int = Field(
        20, ge=1, alias="minFeedback",
        description="Answers with feedback needed before accuracy is judged.")

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: list[int]) -> list[int]:
        if not value or value[-1] != 100 or any(not 0 < p <= 100 for p in value) or any(
                b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(f"steps {value} must rise from above 0 to 100, e.g. [10, 50, 100]")
        return value


class ServeSpec(PredictorSpec):
    """A model service: predictor, versions and the Serve settings of their replicas."""

    kind: Literal["Serve"] = Field("Serve", description="Always Serve.")
    name: str = Field(..., description="Service name: the Serve application and its route.")
    route_prefix: str | None = Field(
        None, alias="routePrefix", description="HTTP route; default /<name>.",
    )
    versions: list[ServeVersion] = Field(..., min_length=1, description="Model versions.")
    replicas: int | None = Field(
        None, ge=1, description="Fixed replicas per version (instead of autoscaling).",
    )
    autoscaling: ServeAutoscaling | None = Field(None, description="Replica autoscaling bounds.")
    resources: ServeResources = Field(default_factory=ServeResources, description="Per replica.")
    max_ongoing_requests: int = Field(
        8, ge=1, alias="maxOngoingRequests", description="Requests one replica takes at once.",
    )
    batching: ServeBatching = Field(default_factory=ServeBatching, description="Batching.")
    metrics: bool = Field(
        True, description="The router exports raykube's serving metrics (requests, latency, "
        "retries, class labels, feedback); off only to measure what they cost.")
    health_check_period_s: float = Field(
        5.0, gt=0, alias="healthCheckPeriodS", description="Seconds between health checks.",
    )
    cluster: str | None = Field(
        None, description="Cluster spec file (relative to this file) for a KubeRay RayService.",
    )
    upgrade_strategy: Literal["NewCluster", "None"] = Field(
        "NewCluster", alias="upgradeStrategy",
        description="RayService upgradeStrategy.type when the cluster spec changes: NewCluster "
        "(zero-downtime blue/green) or None (in place).",
    )
    health_check_timeout_s: float = Field(
        10.0, gt=0, alias="healthCheckTimeoutS", description="Seconds a health check may take.",
    )
    rollout: RolloutPolicy | None = Field(
        None, description="A judged canary: a deploy that adds a version moves its share "
        "through the steps, promoting it when every step passes and rolling back at the first "
        "that fails. Without it, versions get their weights at once.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _serve_name(value, "name")

    @field_validator("route_prefix")
    @classmethod
    def _route(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"routePrefix {value!r} must start with '/', e.g. /{value}")
        return value

    @model_validator(mode="after")
    def _rules(self) -> ServeSpec:
        names = [v.version for v in self.versions]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"version names repeat: {', '.join(repeated)}; give each its own")
        total = sum(v.weight for v in self.versions)
        if total != 100:
            shares = ", ".join(f"{v.version}={v.weight}" for v in self.versions)
            raise ValueError(f"version weights sum to {total} ({shares}); make them sum to 100")
        if (self.replicas is None) == (self.autoscaling is None):
            raise ValueError(
                "set exactly one of replicas (a fixed count) or autoscaling "
                "(minReplicas/maxReplicas)"
            )
        return self

    @property
    def route(self) -> str:
        """The HTTP route the service answers on."""
        return self.route_prefix or f"/{self.name}"

    @property
    def weights(self) -> dict[str, int]:
        """Version -> percent of traffic."""
        return {v.version: v.weight for v in self.versions}

    def with_weights(self, **weights: int) -> ServeSpec:
        """A copy with new traffic shares; versions given 0 keep running without traffic.

        >>> spec.with_weights(v1=90, v2=10)    # canary  # doctest: +SKIP
        """
        unknown = sorted(set(weights) - set(self.weights))
        if unknown:
            raise SpecError(
                f"no version named {', '.join(unknown)} in service {self.name!r}",
                f"versions are: {', '.join(self.weights)}",
            )
        versions = [
            v.model_copy(update={"weight": weights.get(v.version, 0)}) for v in self.versions
        ]
        return self.model_copy(update={"versions": versions}).validated()

    def validated(self) -> ServeSpec:
        """Re-run every rule (after a programmatic change); raises SpecError."""
        data = self.model_dump(by_alias=True, exclude_none=True)
        return parse_serve_spec(data, source=f"service {self.name}")

    def app_name(self, version: str) -> str:
        """The Serve application that runs ``version`` (the service's own app is its router)."""
        return model_app_name(self.name, version)


APP_SEPARATOR = "--"
"""Between a service's name and a version's in the version's Serve application name; neither
name may hold it, so ``foo--bar`` is always service ``foo``'s version ``bar``."""


def _serve_name(value: str, what: str) -> str:
    check_dns_label(value, what)
    if APP_SEPARATOR in value:
        raise ValueError(f"{what} {value!r} holds {APP_SEPARATOR!r}, which separates a service "
                         "from its version in Serve's application names: use single '-'")
    return value


def model_app_name(service: str, version: str) -> str:
    """Serve application name of one version of a service; the router looks versions up by it."""
    return f"{service}{APP_SEPARATOR}{version}"


def parse_serve_spec(data: Any, *, source: str = "<serve spec>") -> ServeSpec:
    """Validate a serve spec given as a mapping.

    Raises:
        SpecError: every problem with its field path and fix.
    """
    return parse(ServeSpec, data, source=source, what="serve spec",
                 example="jobs/digits.serve.yaml")


def load_serve_spec(path: str | Path) -> ServeSpec:
    """Read a serve spec file; a relative ``workingDir`` is made absolute against the file.

    Raises:
        SpecError: missing file, malformed YAML or invalid fields.
    """
    file = Path(path)
    spec = with_working_dir_of(load(file, ServeSpec, "serve spec", "jobs/digits.serve.yaml"),
                               file)
    if spec.cluster:
        spec = spec.model_copy(update={"cluster": str((file.parent / spec.cluster).resolve())})
    return spec
