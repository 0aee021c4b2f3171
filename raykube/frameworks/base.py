"""What a framework is to raykube: the :class:`Framework` base and the helpers its hooks share.

Each framework module subclasses :class:`Framework`; :mod:`raykube.frameworks` holds the registry.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from raykube.errors import TrainError


@dataclass(frozen=True)
class TrainerRequest:
    """Everything a framework needs to build its Ray Train trainer."""

    train_fn: Callable[[dict[str, Any]], Any]
    config: dict[str, Any]
    scaling: Any  # ray.train.ScalingConfig
    run: Any  # ray.train.RunConfig
    use_cuda: bool
    datasets: Mapping[str, Any] = field(default_factory=dict)
    """Ray Datasets by name, split across the workers by Ray Train (``worker.dataset``)."""


def with_worker_env(run: Any, env: Mapping[str, str]) -> Any:
    """``run`` (a Ray ``RunConfig``) with ``env`` added to its workers' runtime env, so it is
    set before any of their code runs."""
    if not env:
        return run
    runtime_env = dict(run.worker_runtime_env or {})
    runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **env}
    run.worker_runtime_env = runtime_env
    return run


def build(model_or_builder: Any) -> Any:
    """Call a plain function or lambda (a model builder); return anything else (a model) as is."""
    is_builder = callable(model_or_builder) and isinstance(model_or_builder, type(build))
    return model_or_builder() if is_builder else model_or_builder


def world_size() -> int:
    """How many workers the current training run has (1 outside a run)."""
    try:
        import ray.train

        return int(ray.train.get_context().get_world_size())
    except (RuntimeError, AttributeError, ImportError):
        return 1


class Framework:
    """One framework raykube trains and serves with. Subclasses override what differs.

    Attributes:
        name: what users pass as ``framework=`` and write as ``framework:`` in a serve spec.
        modules: modules that must be importable in the environment the framework runs in.
        install: what to install when one is missing (for the error's hint).
        worker_env: environment variables its training workers and serving replicas start with.
    """

    name: ClassVar[str] = ""
    modules: ClassVar[tuple[str, ...]] = ()
    install: ClassVar[str] = ""
    worker_env: ClassVar[Mapping[str, str]] = {}

    def check_installed(self) -> None:
        """Raise :class:`TrainError` naming the missing module and its install command."""
        for module in self.modules:
            if importlib.util.find_spec(module) is None:
                raise TrainError(
                    f"framework module {module!r} is not installed in this environment",
                    f"install it: pip install {self.install}",
                )

    def cuda_on_workers(self, gpus: float, accelerator_type: str | None) -> bool:
        """Whether its workers with ``gpus`` GPUs each should use CUDA (and NCCL): only for a
        framework where raykube picks the device, and only where a worker really sees one."""
        return False

    def python(self) -> str | None:
        """The interpreter its workers and replicas run in, where not the cluster's own."""
        return None

    def make_trainer(self, request: TrainerRequest) -> Any:
        """The Ray Train trainer that runs ``request``."""
        raise NotImplementedError

    def on_process_start(self) -> None:
        """Run in a worker or replica process before the framework is imported there."""

    def on_worker_start(self) -> None:
        """Run on each training worker before the user's loop (after :meth:`on_process_start`)."""

    def prepare(self, model_or_builder: Any) -> Any:
        """A model ready for data-parallel training on this worker (default: as built)."""
        return build(model_or_builder)

    def load_predictor(self, import_path: str, checkpoint: str) -> Any:
        """The user's predictor (``module:Class``) loaded from ``checkpoint``, in a process
        made ready for this framework first (the predictor's module imports it)."""
        self.on_process_start()
        module_name, _, class_name = import_path.partition(":")
        predictor_class = getattr(importlib.import_module(module_name), class_name)
        return predictor_class(checkpoint)

    def tensors(self, arrays: dict[str, Any]) -> dict[str, Any]:
        """One batch of a streamed data set (NumPy arrays by column) in the framework's own
        form (default: NumPy, which MXNet's ``nd.array`` and every framework take)."""
        return arrays

    def keras_dataset(self, generate: Callable[[], Any], width: int, label_dtype: Any) -> Any:
        """A ``tf.data.Dataset`` of a worker's batches: TensorFlow only."""
        raise TrainError(f"tf_dataset() is for framework='tensorflow', not {self.name!r}",
                         "iterate worker.dataset(name).batches() instead")


class NoFramework(Framework):
    """Outside a training run (a loop run as a plain script): models are used as built."""

    name = "none"



__all__ = ["Framework", "NoFramework", "TrainerRequest", "build", "with_worker_env", "world_size"]
