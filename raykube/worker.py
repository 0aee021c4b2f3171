"""What a training function calls on each worker, whatever the framework.

A per-worker loop asks raykube for its place (:func:`context`), its share of the data
(:func:`shard`, or :func:`dataset` for a streamed one), a model made ready for data-parallel training (:func:`prepare`), the state to
resume from (:func:`restore`), and reports metrics and checkpoints through one call
(:func:`report`). Nothing else framework-specific is needed beyond the framework itself.

Example::

    from raykube import worker

    def loop(config):
        X, y = worker.shard(X_train, y_train)
        model = worker.prepare(build_model)
        state = worker.restore()
        start = state["epoch"] + 1 if state else 0
        for epoch in range(start, config["epochs"]):
            ...
            worker.report({"epoch": epoch, "loss": loss}, state={"epoch": epoch, ...})
"""

from __future__ import annotations

import inspect
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raykube import frameworks
from raykube.data import DatasetShard
from raykube.errors import DataError
from raykube.frameworks import mxnet as _mxnet
from raykube.frameworks import tensorflow as _tensorflow
from raykube.frameworks import torch as _torch
from raykube.frameworks.state import StateError, read_state, write_state
from raykube.progress import LOGGER_NAME
from raykube.worker_metrics import TrainMetrics

logger = logging.getLogger(f"{LOGGER_NAME}.train")

_framework: str | None = None
_run_dir: str | None = None
_feed: Any = None
"""The queue rank 0 puts its reports on for the driver (:mod:`raykube.training.feed`)."""
_metrics: TrainMetrics | None = None
"""Rank 0's exported series of this run (made on its first report)."""
_last_metrics: dict[str, Any] | None = None
"""What this worker last passed to :func:`report` in this run (checkpoint or not)."""

OUTCOME_KEY = "__raykube_outcome__"
"""Marks what :func:`wrap`'s function returns: the loop's own value and its last metrics."""


def _activate(framework: str, run_dir: str | None, feed: Any = None,
              ray_log_level: str = "INFO") -> None:
    """Called by raykube's wrapper before the user's loop runs on a worker: the framework's
    process and worker start hooks (MXNet's numpy alias, TensorFlow's strategy)."""
    global _framework, _run_dir, _last_metrics, _feed, _metrics
    _framework, _run_dir, _last_metrics, _feed, _metrics = framework, run_dir, None, feed, None
    _quiet_ray_train_reports(ray_log_level)
    chosen = frameworks.get(framework)
    chosen.on_process_start()
    chosen.on_worker_start()


def _quiet_ray_train_reports(level: str) -> None:
    """Give Ray Train's per-report lines ("Reporting training result N: ...") the run's log
    level. Ray 2.60 logs them under a logger named by its file's path, not under ``ray.train``,
    so the run's ``LoggingConfig`` never reaches them."""
    try:
        from ray.train.v2._internal.execution import context as train_context
    except ImportError:  # another Ray layout: its lines stay as Ray makes them
        return
    logging.getLogger(train_context.__file__).setLevel(level)


def _active() -> frameworks.Framework:
    """The framework of the run this worker is in (none outside a run)."""
    return frameworks.get(_framework) if _framework else frameworks.NoFramework()


@dataclass(frozen=True)
class WorkerContext:
    """Where this worker stands in the run."""

    rank: int
    world_size: int
    local_rank: int
    framework: str
    experiment: str

    @property
    def is_chief(self) -> bool:
        """Rank 0: the worker that writes checkpoints and reports progress."""
        return self.rank == 0


def context() -> WorkerContext:
    """This worker's rank, the number of workers and the framework.

    Outside a training run (a plain script), it is rank 0 of 1, so loops run unchanged.
    """
    try:
        import ray.train

        ctx = ray.train.get_context()
        return WorkerContext(
            rank=ctx.get_world_rank(),
            world_size=ctx.get_world_size(),
            local_rank=ctx.get_local_rank(),
            framework=_framework or "none",
            experiment=ctx.get_experiment_name(),
        )
    except (RuntimeError, AttributeError, ImportError):
        return WorkerContext(0, 1, 0, _framework or "none", "local")


def node_id() -> str:
    """The Ray node this worker runs on (to check placement)."""
    import ray

    return str(ray.get_runtime_context().get_node_id())


def shard(*arrays: Any) -> Any:
    """This worker's contiguous share of each array (sizes differ by at most one row).

    Returns one array for one argument, a tuple for several.
    """
    ctx = context()
    parts = []
    for array in arrays:
        n = len(array)
        start = ctx.rank * n // ctx.world_size
        stop = (ctx.rank + 1) * n // ctx.world_size
        parts.append(array[start:stop])
    return parts[0] if len(parts) == 1 else tuple(parts)


def dataset(name: str) -> DatasetShard:
    """This worker's share of the run's data set ``name`` (``raykube.train(datasets=...)``),
    streamed: ``for batch in worker.dataset("train").batches(512): ...`` is one epoch, its
    batches dicts of columns in this framework's form (see :class:`raykube.data.DatasetShard`).

    Raises:
        DataError: the run has no data set of that name, or this is not a training run.
    """
    try:
        import ray.train

        iterator = ray.train.get_dataset_shard(name)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise DataError(f"no data set {name!r} in this training run ({exc})",
                        "pass it to raykube.train(datasets={...}) under that name") from None
    if iterator is None:
        raise DataError(f"no data set {name!r} in this training run",
                        "pass it to raykube.train(datasets={...}) under that name")
    return DatasetShard(name, iterator, _active())


def prepare(model_or_builder: Any) -> Any:
    """A model ready for data-parallel training on this worker.

    Pass the model, or a zero-argument function that builds it (TensorFlow needs the builder:
    its variables must be created inside the distribution strategy's scope; compile there too).

    - PyTorch: wrapped in DistributedDataParallel (gloo on CPU, NCCL on GPU), moved to the
      worker's device.
    - TensorFlow: built inside ``MultiWorkerMirroredStrategy``'s scope.
    - MXNet: returned as built; give its ``gluon.Trainer`` the store from
      :func:`mxnet_kvstore` to synchronise gradients.
    """
    return _active().prepare(model_or_builder)


def has_gpu() -> bool:
    """Whether this (PyTorch) worker was given a real GPU: Ray assigned it one and CUDA sees it."""
    return _torch.has_gpu()


def device() -> Any:
    """The torch device of this worker (its GPU where it was given a real one, else CPU)."""
    return _torch.device()


def tf_strategy() -> Any:
    """This run's TensorFlow ``MultiWorkerMirroredStrategy`` (for custom loops: ``.run``)."""
    return _tensorflow.strategy()


def mxnet_kvstore() -> Any:
    """The ``dist_sync`` kvstore that synchronises this MXNet worker with the others."""
    return _mxnet.kvstore()


def report(metrics: dict[str, Any], *, state: dict[str, Any] | None = None) -> None:
    """Report this step's metrics, and a checkpoint when ``state`` is given.

    Every worker must call it at the same points (it is a synchronisation point). Only rank 0
    writes ``state`` (numbers, strings, lists, dicts, NumPy arrays, PyTorch tensors) into the
    checkpoint, in a form that runs no code when read (:mod:`raykube.frameworks.state`); the
    chief's metrics also go to the driver, which shows them as progress (outside
    :func:`raykube.train`, the chief logs them itself).
    """
    global _last_metrics
    _last_metrics = dict(metrics)
    ctx = context()
    if ctx.is_chief:
        _to_driver(_last_metrics)
    try:
        import ray.train
    except ImportError:  # pragma: no cover - ray is a dependency
        return
    try:
        ray.train.get_context()
    except RuntimeError:
        return  # not inside a training run: nothing to report to
    if ctx.is_chief:
        _run_metrics(ctx).reported(metrics, checkpoint=state is not None)
    if state is not None and ctx.is_chief:
        with tempfile.TemporaryDirectory() as folder:
            write_state(folder, state)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
    else:
        ray.train.report(metrics)


def metrics_text(metrics: dict[str, Any]) -> str:
    """``epoch=3, loss=0.02311, test_accuracy=0.9667``: a report as a person reads it."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in metrics.items())


def _to_driver(metrics: dict[str, Any]) -> None:
    """Put rank 0's report on the driver's feed without waiting for room; log it here when
    there is no feed (a loop run on its own) or it cannot take the report."""
    if _feed is not None:
        try:
            _feed.put_nowait(metrics)
            return
        except Exception:  # full, gone, or a value it cannot carry: progress is best effort
            pass
    logger.info("training: %s", metrics_text(metrics))


def _run_metrics(ctx: WorkerContext) -> TrainMetrics:
    """This run's exported series (rank 0 only), made once per run."""
    global _metrics
    if _metrics is None:
        _metrics = TrainMetrics(ctx.experiment, ctx.framework)
    return _metrics


def load_state(checkpoint_dir: str) -> dict[str, Any]:
    """The state a worker reported into the checkpoint at ``checkpoint_dir``.

    Raises:
        StateError: no raykube state there, or it is corrupt or was altered.
    """
    return read_state(checkpoint_dir)


def restore() -> dict[str, Any] | None:
    """The state of the latest checkpoint of this run (after a failure, or when a run with the
    same name and storage path is started again), or None on a fresh start.

    A latest checkpoint that cannot be read (its files cut short by a kill or a full disk, or
    altered) is skipped for the one before it, and the chief says so: losing a few epochs beats
    losing the run.

    Raises:
        StateError: none of the run's checkpoints can be read.
    """
    try:
        import ray.train

        latest = ray.train.get_checkpoint()
    except (RuntimeError, ImportError):
        return None
    if latest is None:
        return None
    refused: list[str] = []
    for checkpoint in _newest_first(latest):
        try:
            with checkpoint.as_directory() as folder:
                state = load_state(folder)
        except StateError as exc:
            refused.append(f"{checkpoint.path}: {exc}")
            continue
        ctx = context()
        if ctx.is_chief:
            _run_metrics(ctx).restarted()
            if refused:
                logger.warning("resuming from %s: the newer checkpoint(s) cannot be read (%s)",
                               checkpoint.path, "; ".join(refused))
        return state
    raise StateError("no checkpoint of this run can be read: " + "; ".join(refused))


def _newest_first(latest: Any) -> list[Any]:
    """``latest`` and the run's older checkpoints beside it, newest first. Ray Train names
    each ``checkpoint_<timestamp>``, so names sort by age; a folder a kill left behind is among
    them, and :func:`load_state` refuses it."""
    import pyarrow.fs
    from ray.train import Checkpoint

    parent, _, name = latest.path.rstrip("/").rpartition("/")
    entries = latest.filesystem.get_file_info(pyarrow.fs.FileSelector(parent))
    older = sorted(
        (e.base_name for e in entries if e.type == pyarrow.fs.FileType.Directory
         and e.base_name.startswith("checkpoint_") and e.base_name < name),
        reverse=True,
    )
    return [latest, *(Checkpoint(f"{parent}/{n}", filesystem=latest.filesystem) for n in older)]


def gather(value: Any, tag: str) -> list[Any]:
    """Every worker's ``value`` (by rank), on every worker: a framework-agnostic all-gather.

    It goes through the run's shared storage and Ray Train's barrier, so it is for small values
    at a few points of a run (a parameter fingerprint at the end, say), not for gradients.
    """
    ctx = context()
    if ctx.world_size == 1 or _run_dir is None:
        return [value]
    import ray.train.collective

    folder = os.path.join(_run_dir, ".raykube-gather", tag)
    os.makedirs(folder, exist_ok=True)
    write_state(os.path.join(folder, str(ctx.rank)), {"value": value})
    ray.train.collective.barrier()
    return [read_state(os.path.join(folder, str(rank)))["value"]
            for rank in range(ctx.world_size)]


def wrap(
    framework: str, train_fn: Callable[..., Any], run_dir: str | None = None, feed: Any = None,
    ray_log_level: str = "INFO",
) -> Callable[[dict[str, Any]], Any]:
    """The per-worker function Ray runs: it activates ``framework``, calls ``train_fn``, and
    returns its value with the metrics it last reported (Ray Train keeps only those reported
    with a checkpoint; the driver reads rank 0's from here). Rank 0's reports go to ``feed``
    as they happen (:mod:`raykube.training.feed`); Ray Train's own lines are kept to
    ``ray_log_level``."""
    takes_config = len(inspect.signature(train_fn).parameters) > 0

    def run(config: dict[str, Any]) -> Any:
        _activate(framework, run_dir, feed, ray_log_level)
        return _outcome(train_fn(config) if takes_config else train_fn())

    return run


def _outcome(value: Any) -> dict[str, Any]:
    """The loop's value and this worker's last metrics. A module function, not part of
    ``run``: ``run`` travels by value (cloudpickle), with a frozen copy of the globals it names,
    while this reads the worker module's own ``_last_metrics``."""
    if _metrics is not None:
        _metrics.wait_exported()
    return {OUTCOME_KEY: True, "value": value, "metrics": _last_metrics}
