"""One adapter per framework: how to build the Ray Train trainer that runs it.

The driver imports nothing of a framework except through Ray's own trainer modules, and only
when that framework is asked for; a missing framework gets an install hint.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raykube.errors import TrainError


@dataclass(frozen=True)
class TrainerRequest:
    """Everything an adapter needs to build a trainer."""

    train_fn: Callable[[dict[str, Any]], Any]
    config: dict[str, Any]
    scaling: Any  # ray.train.ScalingConfig
    run: Any  # ray.train.RunConfig
    use_cuda: bool


def _require(module: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise TrainError(
            f"framework module {module!r} is not installed in this environment",
            f"install it: pip install {install}",
        )


def _torch(request: TrainerRequest) -> Any:
    _require("torch", "'raykube[torch]'")
    from ray.train.torch import TorchConfig, TorchTrainer

    return TorchTrainer(
        request.train_fn,
        train_loop_config=request.config,
        torch_config=TorchConfig(backend="nccl" if request.use_cuda else "gloo"),
        scaling_config=request.scaling,
        run_config=request.run,
    )


def _with_worker_env(run: Any, env: dict[str, str]) -> Any:
    """``run`` with ``env`` added to the workers' runtime env, set before their code runs."""
    runtime_env = dict(run.worker_runtime_env or {})
    runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **env}
    run.worker_runtime_env = runtime_env
    return run


def _tensorflow(request: TrainerRequest) -> Any:
    _require("tensorflow", "'raykube[tensorflow]'")
    _require("tf_keras", "'raykube[tensorflow]'")
    from ray.train.tensorflow import TensorflowTrainer

    # Ray's TF backend asks for Keras 2 (tf_keras) by setting TF_USE_LEGACY_KERAS when the run
    # starts, but its own modules import TensorFlow earlier in the worker, which then binds
    # tf.keras to Keras 3. Setting it in the worker's environment from process start is stable.
    _with_worker_env(request.run, {"TF_USE_LEGACY_KERAS": "1"})
    return TensorflowTrainer(
        request.train_fn,
        train_loop_config=request.config,
        scaling_config=request.scaling,
        run_config=request.run,
    )


def _mxnet(request: TrainerRequest) -> Any:
    from raykube.training.mxnet_backend import make_mxnet_trainer

    return make_mxnet_trainer(request)


TRAINERS: dict[str, Callable[[TrainerRequest], Any]] = {
    "torch": _torch,
    "tensorflow": _tensorflow,
    "mxnet": _mxnet,
}
"""Framework name -> adapter. The names users pass as ``framework=``."""


def check_framework(framework: str) -> None:
    """Raise :class:`TrainError` for a framework raykube has no trainer for."""
    if framework not in TRAINERS:
        raise TrainError(f"unknown framework {framework!r}", f"use one of: {', '.join(TRAINERS)}")


def trainer_for(framework: str, request: TrainerRequest) -> Any:
    """The Ray Train trainer for ``framework``.

    Raises:
        TrainError: unknown framework, or it is not installed.
    """
    check_framework(framework)
    return TRAINERS[framework](request)
