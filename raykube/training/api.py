"""``raykube.train``: one call that runs a per-worker training loop on a cluster with Ray Train.

It checks the request against the cluster before anything starts (framework known and
installed, enough capacity in the cluster's groups even at maxReplicas, GPUs present, storage
writable), picks the framework's Ray Train trainer, runs it, and returns the final metrics and
checkpoints, or raises :class:`TrainError` with the worker's own traceback.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import sysconfig
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raykube import frameworks, worker
from raykube.connection import ensure_connected
from raykube.data.sources import DataSource, is_dataset, parse_source, quiet_ray_data, read
from raykube.errors import DataError, RaykubeError, TrainError
from raykube.frameworks import TrainerRequest
from raykube.output import html_table
from raykube.private import why_not_private
from raykube.progress import verbose
from raykube.specs.cluster import ClusterSpec, WorkerGroupSpec, group_resource
from raykube.target import ClusterRef, resolve
from raykube.training.feed import ReportFeed


Workers = int | tuple[int, int]


@dataclass(frozen=True)
class Resources:
    """What one training worker asks for."""

    cpus: float = 1
    gpus: float = 0
    accelerator_type: str | None = None
    worker_group: str | None = None

    def fits(self, group: WorkerGroupSpec) -> int:
        """How many such workers one node of ``group`` holds."""
        if self.worker_group and group.group_name != self.worker_group:
            return 0
        if self.accelerator_type and group.accelerator_type != self.accelerator_type:
            return 0
        counts = []
        if self.cpus:
            counts.append(math.floor(group.ray_cpus / self.cpus))
        if self.gpus:
            counts.append(math.floor(group.gpu / self.gpus))
        elif group.gpu and not self.worker_group:
            # CPU-only work does not land on GPU nodes unless asked: GPU nodes are kept for GPU work.
            return 0
        return min(counts) if counts else 0


def max_placeable(spec: ClusterSpec, resources: Resources) -> int:
    """Most workers of ``resources`` the cluster can hold with every group at maxReplicas."""
    return sum(
        resources.fits(group) * int(group.max_replicas or 0) for group in spec.worker_group_specs
    )


def check_request(spec: ClusterSpec, resources: Resources, min_workers: int) -> None:
    """Refuse, before anything starts, a request the cluster can never satisfy.

    Raises:
        TrainError: naming what is missing and how to fix it.
    """
    if resources.worker_group:
        try:
            spec.worker_group(resources.worker_group)
        except KeyError as exc:
            raise TrainError(
                f"cluster {spec.name!r} has {exc.args[0]}", "pass worker_group= one of those"
            ) from None
    if resources.gpus and not spec.has_gpus:
        raise TrainError(
            f"the run asks for {resources.gpus:g} GPU per worker but cluster {spec.name!r} has "
            "no GPU worker group",
            "add a worker group with gpu: 1 (see clusters/gpu.yaml), or train on CPUs (gpus=0)",
        )
    capacity = max_placeable(spec, resources)
    if min_workers > capacity:
        groups = ", ".join(
            f"{g.group_name}: {g.max_replicas} x {g.ray_cpus} CPU/{g.gpu} GPU"
            for g in spec.worker_group_specs
        )
        raise TrainError(
            f"the run needs {min_workers} workers of {resources.cpus:g} CPU / {resources.gpus:g} "
            f"GPU but cluster {spec.name!r} can hold at most {capacity} even at maxReplicas "
            f"({groups})",
            "use fewer workers, or raise maxReplicas of a group in the cluster spec",
        )


def check_storage(path: str) -> str:
    """Make sure checkpoints can be written under ``path``, and by no other user (whoever can
    write there controls what a resumed run loads); return it absolute.

    Raises:
        TrainError: the folder cannot be created or written, or another user could write it.
    """
    folder = Path(path).expanduser().absolute()
    probe = folder / f".raykube-write-test-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise TrainError(
            f"storage path {str(folder)!r} cannot be written: {exc.strerror or exc}",
            "pass storage_path= a folder this user can write, shared by every node (on "
            "Kubernetes: the spec's storage.path, backed by a ReadWriteMany PVC)",
        ) from None
    reason = why_not_private(folder)
    if reason:
        raise TrainError(f"storage path {str(folder)!r}: {reason}; whoever can write there "
                         "controls what a resumed run loads",
                         "pass storage_path= a folder only you can write")
    return str(folder)


@dataclass
class TrainResult:
    """What a finished run left behind.

    Attributes:
        metrics: the last metrics rank 0 reported, with a checkpoint or without.
        checkpoint: folder of the latest checkpoint, or None when none was saved.
        best_checkpoint: folder of the best checkpoint by ``score``, else the latest.
        path: the run's folder on storage (pass the same name and storage to resume it).
        return_value: what rank 0's training function returned.
        history: every checkpointed report's metrics, in order.
    """

    metrics: dict[str, Any]
    checkpoint: str | None
    best_checkpoint: str | None
    path: str
    return_value: Any = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def _repr_html_(self) -> str:
        """A notebook's view: the last metrics and where the checkpoints are."""
        return html_table("training result", [
            *((f"metrics.{k}", f"{v:.4g}" if isinstance(v, float) else v)
              for k, v in self.metrics.items()),
            ("checkpoint", self.checkpoint), ("run folder", self.path)])

    def state(self, best: bool = False) -> dict[str, Any] | None:
        """The state reported into the latest (or best) checkpoint."""
        folder = self.best_checkpoint if best else self.checkpoint
        return worker.load_state(folder) if folder else None


def check_datasets(datasets: Mapping[str, Any], local_files: bool
                   ) -> dict[str, DataSource | Any]:
    """Each named data set checked before anything starts: a Ray Dataset as it is, a path or
    URI parsed (a local path must be there when the nodes share this machine's files).

    Raises:
        DataError: a bad name, or a source that cannot be read (naming it).
    """
    checked: dict[str, DataSource | Any] = {}
    for name, source in datasets.items():
        if not isinstance(name, str) or not name:
            raise DataError(f"datasets: {name!r} is not a name", 'name each, e.g. {"train": ...}')
        checked[name] = source if is_dataset(source) else parse_source(
            source, what=f"datasets[{name!r}]", check_local=local_files)
    return checked


def open_datasets(sources: Mapping[str, DataSource | Any]) -> dict[str, Any]:
    """Ray Datasets of the checked sources (connected: reading is planned on the cluster)."""
    if sources:
        quiet_ray_data()
    return {name: read(source, shuffle_files=True) if isinstance(source, DataSource) else source
            for name, source in sources.items()}


def ship_by_value(train_fn: Callable[..., Any]) -> list[str]:
    """Send the user's own code with the run: the module defining ``train_fn`` and the modules
    beside it in the same folder are pickled by value, so workers need not find them on their
    path. Installed packages (site-packages) and raykube itself are left to the environment.

    Returns:
        The names of the modules shipped.
    """
    from ray import cloudpickle

    module = sys.modules.get(train_fn.__module__)
    source = getattr(module, "__file__", None)
    if module is None or source is None or train_fn.__module__ == "__main__":
        return []
    installed = {Path(p).resolve() for p in sysconfig.get_paths().values()}
    folder = Path(source).resolve().parent
    if any(folder == root or root in folder.parents for root in installed):
        return []
    shipped = []
    for name, candidate in list(sys.modules.items()):
        path = getattr(candidate, "__file__", None)
        if path and Path(path).resolve().parent == folder and not name.startswith("raykube"):
            cloudpickle.register_pickle_by_value(candidate)
            shipped.append(name)
    return sorted(shipped)


def _failure_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if len(text) < 6000 else text[:3000] + "\n...\n" + text[-3000:]


def train(
    train_fn: Callable[..., Any],
    *,
    framework: str = "torch",
    cluster: ClusterRef = None,
    num_workers: Workers = 2,
    elastic_resize_monitor_interval_s: float = 60.0,
    cpus_per_worker: float = 1,
    gpus_per_worker: float = 0,
    accelerator_type: str | None = None,
    worker_group: str | None = None,
    storage_path: str | None = None,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    max_failures: int | None = None,
    keep_checkpoints: int = 2,
    score: str | None = None,
    score_mode: str = "max",
    datasets: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Run ``train_fn`` on ``num_workers`` workers of ``cluster`` and return the outcome.

    Args:
        train_fn: the per-worker loop, ``fn(config)`` or ``fn()``; it uses
            :mod:`raykube.worker` for its rank, data shard, model and reports.
        framework: 'torch', 'tensorflow' or 'mxnet'.
        cluster: a :class:`Cluster`, a cluster name (``kuberay:NAMESPACE/NAME`` on
            Kubernetes), a ``host:port`` / ``ray://`` address, or None inside a Ray job.
        num_workers: a count, or ``(min, max)`` for elastic training that grows when the
            autoscaler adds nodes.
        elastic_resize_monitor_interval_s: elastic only: how often a running group checks
            whether more workers fit now, and restarts from its latest checkpoint at the
            bigger size if they do (Ray's name and default).
        cpus_per_worker, gpus_per_worker: resources of one worker (GPUs are logical on a
            CPU-only machine: CUDA is used only where a device is really there).
        accelerator_type: e.g. 'A100': only nodes of that accelerator.
        worker_group: place workers on this worker group of the cluster spec.
        storage_path: where checkpoints go; default the cluster spec's ``storage.path``.
        name: the run's name; a run started again with the same name and storage resumes
            from its latest checkpoint.
        config: passed to ``train_fn``.
        max_failures: restarts from the latest checkpoint after a worker or node dies
            (default 0 for a fixed size, 3 for elastic; -1 for unlimited).
        keep_checkpoints: how many checkpoints to keep.
        score, score_mode: metric and 'max'/'min' that rank checkpoints for ``best_checkpoint``.
        datasets: data sets streamed to the workers by name, each a Ray Dataset (with the
            preprocessing mapped on) or a path/URI of Parquet, CSV or NumPy files
            (:func:`raykube.data.read`, files in a new order each epoch); Ray Train splits each
            across the workers as it is read, and the loop iterates its share with
            ``worker.dataset(name).batches(...)``.

    Returns:
        :class:`TrainResult`.

    Raises:
        TrainError: refused before start (with the reason) or failed (with the worker's
            traceback).
    """
    chosen = frameworks.get(framework)
    elastic = isinstance(num_workers, tuple)
    low, high = num_workers if isinstance(num_workers, tuple) else (num_workers, num_workers)
    if low < 0 or high < low:
        raise TrainError(
            f"num_workers {num_workers!r} is not a count >= 0 or a range (min, max) with "
            "min <= max",
            "pass e.g. num_workers=2 or num_workers=(1, 3)",
        )
    resources = Resources(cpus_per_worker, gpus_per_worker, accelerator_type, worker_group)
    target = resolve(cluster)
    spec = target.spec
    if spec is not None:
        check_request(spec, resources, low)
    storage = storage_path or (spec.storage.path if spec and spec.storage else None)
    if storage is None:
        raise TrainError(
            "no storage path for checkpoints",
            "pass storage_path=, or give the cluster spec a storage: {path: ...}",
        )
    cluster_known = target.cluster
    local_files = cluster_known is None or cluster_known.capabilities.shares_driver_filesystem
    if local_files:
        storage = check_storage(storage)  # else the folder is the pods' (a volume) to check
    sources = check_datasets(datasets or {}, local_files)

    ensure_connected(target)
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig

    use_cuda = bool(gpus_per_worker) and chosen.cuda_on_workers(gpus_per_worker,
                                                                accelerator_type)
    per_worker: dict[str, float] = {"CPU": cpus_per_worker}
    if gpus_per_worker:
        per_worker["GPU"] = gpus_per_worker
    if worker_group:
        per_worker[group_resource(worker_group)] = 0.001
    scaling = ScalingConfig(
        num_workers=(low, high) if elastic else low,
        use_gpu=bool(gpus_per_worker),
        resources_per_worker=per_worker,
        accelerator_type=accelerator_type,
        elastic_resize_monitor_interval_s=elastic_resize_monitor_interval_s,
    )
    run_name = name or f"{framework}-{time.strftime('%Y%m%d-%H%M%S')}"
    ray_log_level = "INFO" if verbose() else "WARNING"
    failures = max_failures if max_failures is not None else (3 if elastic else 0)
    run = RunConfig(
        name=run_name,
        storage_path=storage,
        failure_config=FailureConfig(max_failures=failures),
        checkpoint_config=CheckpointConfig(
            num_to_keep=keep_checkpoints,
            checkpoint_score_attribute=score,
            checkpoint_score_order=score_mode,
        ),
        # Ray Train's own lines (each report, each checkpoint, the group starting) only when
        # asked (`raykube -v`, or the raykube logger at DEBUG): raykube says the progress.
        logging_config=LoggingConfig(log_level=ray_log_level),
    )
    ship_by_value(train_fn)
    config = dict(config or {})
    epochs = config.get("epochs")
    with ReportFeed(run_name, epochs if isinstance(epochs, int) else None) as feed:
        trainer = chosen.make_trainer(TrainerRequest(
            worker.wrap(framework, train_fn, os.path.join(storage, run_name), feed.queue,
                        ray_log_level),
            config, scaling, run, use_cuda, open_datasets(sources),
        ))
        failure: Exception | None = None
        # fit() installs a SIGINT handler holding the controller actor and never removes it,
        # which keeps the controller alive until the driver exits: put the caller's back after.
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous_sigint = signal.getsignal(signal.SIGINT) if in_main_thread else None
        try:
            result = trainer.fit()
        except RaykubeError:
            raise
        except Exception as exc:  # Ray's TrainingFailedError and friends: the user's error
            failure = exc
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous_sigint)
        # Ray's frames in the traceback hold the trainer and its controller actor: drop them,
        # or the run's actors live as long as the exception does (a notebook keeps the last).
        del trainer
    if failure is not None:
        failure.__traceback__ = None
        raise TrainError(
            f"training run {run_name!r} failed:\n{_failure_text(failure)}",
            f"the traceback above is your training function's; checkpoints are in "
            f"{storage}/{run_name}",
        ) from failure
    if getattr(result, "error", None):
        raise TrainError(f"training run {run_name!r} failed:\n{_failure_text(result.error)}")
    best = result.checkpoint
    if score and result.best_checkpoints:
        pick = max if score_mode == "max" else min
        best = pick(result.best_checkpoints, key=lambda pair: pair[1][score])[0]
    history = [m for _, m in (result.best_checkpoints or [])]
    outcome = getattr(result, "return_value", None)
    if isinstance(outcome, dict) and outcome.get(worker.OUTCOME_KEY):
        value, last = outcome["value"], outcome["metrics"]
    else:  # a run Ray Train ended without rank 0's function returning
        value, last = outcome, None
    return TrainResult(
        metrics=dict(last if last is not None else (result.metrics or {})),
        checkpoint=result.checkpoint.path if result.checkpoint else None,
        best_checkpoint=best.path if best else None,
        path=str(result.path),
        return_value=value,
        history=history,
    )
