"""The batch spec: inference over a data set too big for one machine, described once.

A predictor class (the same interface serving uses) loaded from a checkpoint in each actor of an
autoscaling pool, Ray Data ``map_batches`` over the input's files a block at a time, and
predictions written next to the input's id column: one output row per input row. Names follow
Ray Data's (``batchSize``, an actor pool's ``minSize``/``maxSize``) and the serve spec's.

Example (``jobs/digits.batch.yaml``)::

    kind: BatchPredict
    name: digits-batch
    framework: torch
    predictor: digits_serving:TorchDigits
    workingDir: .
    checkpoint: /tmp/raykube-storage/local/digits/checkpoint_...
    input: /data/digits/test              # a folder or file of Parquet/CSV, or a URI
    output: /data/digits/predictions      # a folder that does not exist yet, or is empty
    idColumn: id
    features: [pixels]
    batchSize: 1024
    actorPool: {minSize: 1, maxSize: 2}
    resources: {cpus: 1}

On Kubernetes (``raykube manifest``, ``raykube job apply``) it becomes a RayJob whose
entrypoint runs ``raykube batch run`` on the cluster, reading and writing the storage claim.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from raykube.specs.base import SpecModel, check_dns_label, load, parse
from raykube.specs.predictor import URI, PredictorSpec, with_working_dir_of
from raykube.specs.serve import ServeResources


class ActorPool(SpecModel):
    """The autoscaling pool of predictor actors (Ray Data's ``ActorPoolStrategy``)."""

    min_size: int = Field(1, ge=1, alias="minSize", description="Actors always running.")
    max_size: int = Field(1, ge=1, alias="maxSize",
                          description="Most actors; the pool grows while input waits.")

    @model_validator(mode="after")
    def _bounds(self) -> ActorPool:
        if self.min_size > self.max_size:
            raise ValueError(f"minSize ({self.min_size}) is above maxSize ({self.max_size}): "
                             "make minSize <= maxSize")
        return self


class BatchPredictSpec(PredictorSpec):
    """Batch inference over a data set: predictor, checkpoint, input, output and the pool."""

    kind: Literal["BatchPredict"] = Field("BatchPredict", description="Always BatchPredict.")
    name: str = Field(..., description="The job's name (the RayJob's metadata.name).")
    namespace: str | None = Field(None, description="Kubernetes namespace of the RayJob.")
    checkpoint: str = Field(..., min_length=1,
                            description="Checkpoint folder the predictor loads.")
    input: str = Field(..., min_length=1, description="Input folder, file or URI.")
    input_format: Literal["parquet", "csv"] | None = Field(
        None, alias="inputFormat", description="parquet or csv; default from the files' suffix.")
    output: str = Field(..., min_length=1,
                        description="Output folder or URI for the predictions (Parquet).")
    id_column: str = Field("id", alias="idColumn",
                           description="The input column that names each row; copied out.")
    features: list[str] = Field(..., min_length=1,
                                description="Input columns the predictor takes, in order.")
    prediction_column: str = Field("prediction", alias="predictionColumn",
                                   description="Name of the output's prediction column.")
    batch_size: int = Field(1024, ge=1, le=1_000_000, alias="batchSize",
                            description="Rows per predictor call.")
    actor_pool: ActorPool = Field(default_factory=ActorPool, alias="actorPool",
                                  description="Predictor actors.")
    resources: ServeResources = Field(default_factory=ServeResources,
                                      description="Per actor: cpus, gpus, acceleratorType.")
    worker_group: str | None = Field(None, alias="workerGroup",
                                     description="Place the actors on this worker group.")
    bad_rows: str | None = Field(
        None, alias="badRows",
        description="Folder or URI for rows the predictor cannot take (with the reason); "
        "without it, the first such row fails the job, naming its id.")
    cluster: str | None = Field(
        None, description="Cluster spec file (relative to this file) for the RayJob's "
        "ephemeral cluster on Kubernetes.")
    cluster_selector: dict[str, str] | None = Field(
        None, alias="clusterSelector",
        description="Labels of an existing RayCluster for the RayJob, e.g. {ray.io/cluster: x}.")

    @field_validator("name", "namespace")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return None if value is None else check_dns_label(value, "name")

    @field_validator("features")
    @classmethod
    def _features(cls, value: list[str]) -> list[str]:
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"features repeat {', '.join(repeated)}: name each column once")
        return value

    @model_validator(mode="after")
    def _rules(self) -> BatchPredictSpec:
        if self.id_column in self.features:
            raise ValueError(f"idColumn {self.id_column!r} is also a feature: the id names a "
                             "row, it is not an input of the model")
        if self.prediction_column == self.id_column:
            raise ValueError(f"predictionColumn and idColumn are both {self.id_column!r}: "
                             "give them different names")
        if self.cluster and self.cluster_selector:
            raise ValueError("give at most one of cluster (an ephemeral cluster) and "
                             "clusterSelector (an existing RayCluster)")
        same = {self.input, self.output} if self.bad_rows is None else {
            self.input, self.output, self.bad_rows}
        if len(same) < (2 if self.bad_rows is None else 3):
            raise ValueError("input, output and badRows must be different places")
        return self

    def is_local(self, location: str) -> bool:
        """Whether ``location`` is a path rather than a URI."""
        return not URI.match(location)

    def run_part(self) -> dict[str, Any]:
        """What ``raykube batch run`` needs inside a job on the cluster: the spec without where
        the job runs (namespace, cluster) and without its code, which the job's runtime env
        carries to every process of the job."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude={
            "namespace", "cluster", "cluster_selector", "working_dir"})

    def rayjob_entrypoint(self) -> str:
        """The command a RayJob runs: ``python -m raykube batch run --spec-json '...'``, the
        spec quoted for the shell the submitter runs it in."""
        text = json.dumps(self.run_part(), sort_keys=True, separators=(",", ":"))
        return f"python -m raykube batch run --spec-json {shlex.quote(text)}"


def parse_batch_spec(data: Any, *, source: str = "<batch spec>") -> BatchPredictSpec:
    """Validate a batch spec given as a mapping.

    Raises:
        SpecError: every problem with its field path and fix.
    """
    return parse(BatchPredictSpec, data, source=source, what="batch spec",
                 example="jobs/digits.batch.yaml")


def load_batch_spec(path: str | Path) -> BatchPredictSpec:
    """Read a batch spec file; a relative ``workingDir`` and ``cluster`` are made absolute
    against the file.

    Raises:
        SpecError: missing file, malformed YAML or invalid fields.
    """
    file = Path(path)
    spec = with_working_dir_of(load(file, BatchPredictSpec, "batch spec",
                                    "jobs/digits.batch.yaml"), file)
    if spec.cluster:
        spec = spec.model_copy(update={"cluster": str((file.parent / spec.cluster).resolve())})
    return spec
