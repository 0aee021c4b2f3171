"""The framework registry: everything raykube knows about a training framework, in one place.

One module per framework (:mod:`~raykube.frameworks.torch`, :mod:`~raykube.frameworks.tensorflow`,
:mod:`~raykube.frameworks.mxnet`) defines a :class:`Framework`: the modules it needs and how to
install them, the environment its workers and replicas start with, the Python it runs in, how
its Ray Train trainer is built, what a process does before the framework is imported, and how a
model is made ready for data-parallel training. Training, the worker API, serving and spec
validation look a framework up here by name; no other module compares a framework's name.

Nothing here imports a framework at module level: each framework module does so inside its
hooks, when that framework is used, so ``import raykube`` stays light.

Example::

    from raykube import frameworks

    frameworks.get("tensorflow").worker_env   # {'TF_USE_LEGACY_KERAS': '1'}
"""

from __future__ import annotations

from raykube.errors import TrainError
from raykube.frameworks import mxnet, tensorflow, torch
from raykube.frameworks.base import (
    Framework,
    NoFramework,
    TrainerRequest,
    build,
    with_worker_env,
    world_size,
)

_FRAMEWORKS: dict[str, Framework] = {
    f.name: f for f in (torch.Torch(), tensorflow.TensorFlow(), mxnet.MXNet())
}
"""Framework name -> framework: the names users pass as ``framework=``."""


def names() -> list[str]:
    """The frameworks raykube knows, by name."""
    return list(_FRAMEWORKS)


def get(name: str) -> Framework:
    """The framework called ``name``.

    Raises:
        TrainError: raykube knows no framework of that name.
    """
    if name not in _FRAMEWORKS:
        raise TrainError(f"unknown framework {name!r}", f"use one of: {', '.join(names())}")
    return _FRAMEWORKS[name]


__all__ = ["Framework", "NoFramework", "TrainerRequest", "build", "get", "names",
           "with_worker_env", "world_size"]
