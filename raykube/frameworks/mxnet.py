"""Apache MXNet: ps-lite's ``dist_sync`` parameter server on Ray Train (see
:mod:`~raykube.frameworks.mxnet_ps`), in MXNet's own Python environment.

MXNet 1.9.1 (the last release) needs numpy < 2, while Ray's driver side needs numpy >= 2: MXNet
workers and replicas run in their own Python environment, named by ``RAYKUBE_MXNET_PYTHON`` and
handed to Ray as their ``py_executable`` (on Kubernetes: an image with MXNet for the group).
"""

from __future__ import annotations

import os
from typing import Any

from raykube.errors import TrainError
from raykube.frameworks.base import Framework, TrainerRequest, with_worker_env, world_size

MXNET_PYTHON_ENV = "RAYKUBE_MXNET_PYTHON"
"""Path of the Python interpreter of the MXNet environment, on every node."""


def patch_numpy() -> None:
    """Give numpy back the alias ``np.bool`` that MXNet 1.9.1 still uses; call before
    importing mxnet."""
    import numpy as np

    if not hasattr(np, "bool"):
        np.bool = bool  # type: ignore[attr-defined]


def mxnet_python() -> str | None:
    """The MXNet interpreter named by ``RAYKUBE_MXNET_PYTHON``.

    Raises:
        TrainError: it is named but does not exist on this machine.
    """
    python = os.environ.get(MXNET_PYTHON_ENV)
    if python and not os.path.exists(python):
        raise TrainError(
            f"{MXNET_PYTHON_ENV}={python} does not exist",
            "create the MXNet environment with `bash scripts/setup-mxnet.sh`, or point "
            f"{MXNET_PYTHON_ENV} at a Python with mxnet==1.9.1, numpy<2 and ray==2.60.0",
        )
    return python


_kvstore: Any = None


def kvstore() -> Any:
    """The ``dist_sync`` kvstore that synchronises this MXNet worker with the others.

    raykube's MXNet backend has set the ps-lite environment; the store is made once per worker.
    """
    global _kvstore
    if _kvstore is None:
        import mxnet as mx

        distributed = world_size() > 1 and "DMLC_ROLE" in os.environ
        _kvstore = mx.kv.create("dist_sync" if distributed else "local")
    return _kvstore


class MXNet(Framework):
    """Apache MXNet 1.9.1 Gluon (``framework="mxnet"``); models are returned as built: give
    their ``gluon.Trainer`` the store from :func:`kvstore` to synchronise gradients."""

    name = "mxnet"
    modules = ("mxnet",)
    install = "mxnet==1.9.1 'numpy<2' in its own environment (bash scripts/setup-mxnet.sh)"
    worker_env = {"OMP_NUM_THREADS": "1"}

    def python(self) -> str | None:
        return mxnet_python()

    def make_trainer(self, request: TrainerRequest) -> Any:
        """A Ray Train ``DataParallelTrainer`` running MXNet workers with the ps-lite backend."""
        # Imported here: the backend subclasses Ray Train's, which loads ray.train.
        from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

        from raykube.frameworks.mxnet_ps import MXNetConfig

        python = self.python()
        run = with_worker_env(request.run, self.worker_env)
        if python:
            run.worker_runtime_env = {**(run.worker_runtime_env or {}), "py_executable": python}
        return DataParallelTrainer(
            request.train_fn,
            train_loop_config=request.config,
            backend_config=MXNetConfig(),
            scaling_config=request.scaling,
            run_config=run,
            datasets=dict(request.datasets) or None,
        )

    def on_process_start(self) -> None:
        patch_numpy()
