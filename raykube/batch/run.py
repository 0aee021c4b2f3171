"""``raykube.batch_predict``: a batch spec run on a cluster with Ray Data, followed to the end.

Everything that can be checked is checked before the cluster is touched (the spec, the
predictor's code, the worker group and its GPUs, the input's files, the checkpoint, an output
folder that holds nothing yet). Then the input is read a block at a time, each block goes to
an actor of the pool (:mod:`raykube.batch.predict_blocks`), and its predictions are written as
Parquet while later blocks are still being read: no process holds the data set. Progress (rows
done, rows/s) is said every few seconds. A run that fails removes what it wrote.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from raykube import frameworks
from raykube.batch.predict_blocks import PredictBlocks, RowCounter
from raykube.connection import ensure_connected
from raykube.data.sources import parse_source, quiet_ray_data, read
from raykube.errors import DataError, RaykubeError, SpecError
from raykube.output import html_table
from raykube.progress import Progress
from raykube.specs.batch import BatchPredictSpec, load_batch_spec
from raykube.specs.cluster import ClusterSpec, group_resource
from raykube.target import ClusterRef, Target, resolve

PROGRESS_EVERY_S = 5.0
"""Seconds between progress lines."""

HEAD_RESOURCE = "node:__internal_head__"
"""The resource only Ray's head node has (locally and in KubeRay's head pod)."""


@dataclass
class BatchResult:
    """What a finished batch job wrote.

    Attributes:
        rows_in: input rows (``rows_out + bad_rows``).
        rows_out: rows written to ``output``, one per good input row.
        bad_rows: rows written aside to ``bad_rows_path``.
        seconds: from the first block read to the last written.
        actor_nodes: the Ray nodes the predictor actors ran on.
    """

    name: str
    output: str
    rows_in: int
    rows_out: int
    bad_rows: int
    seconds: float
    bad_rows_path: str | None = None
    actor_nodes: list[str] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows_in / self.seconds if self.seconds else 0.0

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "rows_per_s": round(self.rows_per_s, 1)})

    def _repr_html_(self) -> str:
        return html_table(f"batch job {self.name}", [
            ("rows in", self.rows_in), ("rows out", self.rows_out), ("bad rows", self.bad_rows),
            ("seconds", f"{self.seconds:.1f}"), ("rows/s", f"{self.rows_per_s:,.0f}"),
            ("output", self.output)])


def batch_predict(spec: BatchPredictSpec | str | Path, cluster: ClusterRef = None, *,
                  timeout: float | None = None) -> BatchResult:
    """Run batch inference ``spec`` on ``cluster`` and return what it wrote.

    Args:
        spec: a :class:`BatchPredictSpec`, or the path of a ``kind: BatchPredict`` file.
        cluster: as for :func:`raykube.train` (None inside a Ray job on the cluster).
        timeout: seconds before the run is given up (None: no limit).

    Raises:
        SpecError: the spec or its code, checkpoint or placement cannot work.
        DataError: the input cannot be read, the output is taken, or a row the predictor
            cannot take (naming its id) while the spec has no ``badRows``.
    """
    if not isinstance(spec, BatchPredictSpec):
        spec = load_batch_spec(spec)
    target = resolve(cluster)
    local_files = target.cluster is None or target.cluster.capabilities.shares_driver_filesystem
    what = f"batch job {spec.name}"
    spec.check_predictor_code(what)
    if spec.uses_local_working_dir() and target.cluster is None:
        raise SpecError(
            f"{what}: workingDir {spec.working_dir} is a local folder, which raykube uploads "
            f"only to a cluster it knows, not to {target.reference}",
            "pass the cluster's name; inside a Ray job, give the job that working_dir and "
            "drop workingDir")
    if target.spec is not None:
        check_placement(spec, target.spec)
    source = parse_source(spec.input, spec.input_format, what=f"{what}: input",
                          check_local=local_files)
    if local_files:
        _check_local_paths(spec, what)

    ensure_connected(target)
    progress = Progress()
    created = [p for p in (spec.output, spec.bad_rows)
               if p and spec.is_local(p) and not Path(p).exists()]
    try:
        return _run(spec, source, target, progress, timeout)
    except BaseException:
        for path in created:  # nothing half-written is left behind
            shutil.rmtree(path, ignore_errors=True)
        raise


def check_placement(spec: BatchPredictSpec, cluster: ClusterSpec) -> None:
    """Refuse actors the cluster can never place: an unknown worker group, GPUs it lacks.

    Raises:
        SpecError: naming the field and the fix.
    """
    where = f"batch job {spec.name}"
    if spec.worker_group:
        try:
            group = cluster.worker_group(spec.worker_group)
        except KeyError as exc:
            raise SpecError(f"{where}: workerGroup: cluster {cluster.name!r} has {exc.args[0]}",
                            "set workerGroup to one of those") from None
        groups = [group]
    else:
        groups = list(cluster.worker_group_specs)
    resources = spec.resources
    fits = [g for g in groups
            if g.ray_cpus >= resources.cpus and g.gpu >= resources.gpus
            and (not resources.accelerator_type or g.accelerator_type == resources.accelerator_type)]
    if not fits:
        raise SpecError(
            f"{where}: no worker group of cluster {cluster.name!r} holds an actor of "
            f"{resources.cpus:g} CPU / {resources.gpus:g} GPU"
            + (f" ({resources.accelerator_type})" if resources.accelerator_type else ""),
            "lower resources, pick another workerGroup, or add such a group to the cluster")


def _check_local_paths(spec: BatchPredictSpec, what: str) -> None:
    if spec.is_local(spec.checkpoint) and not Path(spec.checkpoint).exists():
        raise SpecError(f"{what}: checkpoint {spec.checkpoint} does not exist",
                        "use a checkpoint a training run wrote (TrainResult.checkpoint)")
    for label, location in (("output", spec.output), ("badRows", spec.bad_rows)):
        if location and spec.is_local(location):
            path = Path(location)
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise DataError(f"{what}: {label} {location} already holds files",
                                f"give {label} a new folder, or remove the old results first")


def _runtime_env(spec: BatchPredictSpec, target: Target) -> dict[str, Any]:
    """The actors' runtime env: the predictor's code, its framework's environment."""
    framework = frameworks.get(spec.framework)
    runtime_env = dict(spec.runtime_env)
    runtime_env["env_vars"] = {**framework.worker_env, **runtime_env.get("env_vars", {})}
    cluster = target.cluster
    if spec.uses_local_working_dir() and cluster is not None:
        runtime_env["working_dir"] = cluster.upload_working_dir(str(spec.working_dir))
    elif spec.working_dir:
        runtime_env["working_dir"] = spec.working_dir
    if cluster is None or cluster.capabilities.runs_host_python_envs:
        python = framework.python()
        if python:
            runtime_env["py_executable"] = python
    return runtime_env


def _run(spec: BatchPredictSpec, source: Any, target: Target, progress: Progress,
         timeout: float | None) -> BatchResult:
    import ray
    import ray.data

    quiet_ray_data()
    # On the head, which the autoscaler never removes: a 0-CPU actor does not keep a worker
    # node busy, and one placed on a worker died with it when that node went idle.
    counter = ray.remote(num_cpus=0, resources={HEAD_RESOURCE: 0.001})(RowCounter).remote()
    remote_args: dict[str, Any] = {"num_cpus": spec.resources.cpus,
                                   "runtime_env": _runtime_env(spec, target)}
    if spec.resources.gpus:
        remote_args["num_gpus"] = spec.resources.gpus
    if spec.resources.accelerator_type:
        remote_args["accelerator_type"] = spec.resources.accelerator_type
    if spec.worker_group:
        remote_args["resources"] = {group_resource(spec.worker_group): 0.001}
    predictions = read(source).map_batches(
        PredictBlocks,
        fn_constructor_kwargs={
            "predictor": spec.predictor, "checkpoint": spec.checkpoint,
            "framework": spec.framework, "features": list(spec.features),
            "id_column": spec.id_column, "prediction_column": spec.prediction_column,
            "bad_rows": spec.bad_rows, "counter": counter,
        },
        batch_size=spec.batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=spec.actor_pool.min_size,
                                           max_size=spec.actor_pool.max_size),
        **remote_args,
    )
    progress.say(f"batch job {spec.name}: predicting {spec.input} -> {spec.output} with "
                 f"{spec.actor_pool.min_size}-{spec.actor_pool.max_size} actor(s)")
    failure: list[BaseException] = []

    def write() -> None:
        try:
            predictions.write_parquet(spec.output)
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    started = time.monotonic()
    writer = threading.Thread(target=write, name=f"raykube-batch-{spec.name}", daemon=True)
    writer.start()
    while writer.is_alive():
        writer.join(PROGRESS_EVERY_S)
        rows, _ = ray.get(counter.read.remote())
        elapsed = time.monotonic() - started
        if rows:
            progress.say(f"batch job {spec.name}: {rows:,} rows done, "
                         f"{rows / elapsed:,.0f} rows/s")
        if timeout is not None and elapsed > timeout and writer.is_alive():
            raise DataError(f"batch job {spec.name} did not finish in {timeout:g} s",
                            "raise the timeout, or give actorPool a larger maxSize")
    seconds = time.monotonic() - started
    if failure:
        raise _user_error(failure[0], spec) from None
    _, nodes = ray.get(counter.read.remote())
    rows_out = count_rows(spec.output)
    bad = count_rows(spec.bad_rows) if spec.bad_rows else 0
    result = BatchResult(spec.name, spec.output, rows_out + bad, rows_out, bad, seconds,
                         spec.bad_rows, nodes)
    progress.say(f"batch job {spec.name}: {result.rows_in:,} rows in, {rows_out:,} predicted, "
                 f"{bad:,} set aside, {result.rows_per_s:,.0f} rows/s")
    return result


def _user_error(exc: BaseException, spec: BatchPredictSpec) -> RaykubeError | BaseException:
    """A row error raised in an actor as a :class:`DataError` here, with its own message;
    anything else unchanged (with Ray's traceback: a bug, or a failure of the cluster)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RaykubeError):
            return DataError(f"batch job {spec.name}: {current.message}", current.hint)
        current = current.__cause__ or current.__context__
    text = str(exc)
    if "DataError" in text:  # raised in an actor: Ray hands back its text
        line = next((t for t in text.splitlines() if "DataError:" in t), text)
        return DataError(f"batch job {spec.name}: " + line.split("DataError:", 1)[1].strip(),
                         "fix the input, or set badRows: a folder to write such rows to")
    return exc


def count_rows(location: str | None) -> int:
    """Rows in the Parquet files at ``location`` (from their footers; nothing is read)."""
    if not location:
        return 0
    import pyarrow.dataset as ds

    uri = location if "://" in location else str(Path(location))
    if "://" not in uri and not Path(uri).exists():
        return 0
    return int(ds.dataset(uri, format="parquet").count_rows())
