"""What every spec that runs a predictor shares (serving and batch inference): the framework,
the predictor class, and where its code comes from.

A predictor is any class with ``input_shape``, ``__init__(checkpoint)`` and
``predict(batch) -> one prediction per row`` (see :mod:`raykube.serving.app`); the same class
answers HTTP requests in a service and maps blocks of rows in a batch job.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, field_validator

from raykube import frameworks
from raykube.errors import SpecError
from raykube.specs.base import SpecModel

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
URI = re.compile(r"^[a-z][a-z0-9+.-]*://")


class PredictorSpec(SpecModel):
    """The predictor's framework, class and code."""

    framework: str = Field(
        ..., description="The predictor's framework: torch, tensorflow or mxnet.",
    )
    predictor: str = Field(
        ..., description="module:Class of the predictor, importable from workingDir.",
    )
    working_dir: str | None = Field(
        None, alias="workingDir",
        description="Folder (relative to this file) or remote URI holding the predictor's code.",
    )
    runtime_env: dict[str, Any] = Field(
        default_factory=dict, alias="runtimeEnv",
        description="More Ray runtime env for the predictor's processes (env_vars, pip, ...).",
    )

    @field_validator("framework")
    @classmethod
    def _framework(cls, value: str) -> str:
        if value not in frameworks.names():
            raise ValueError(
                f"framework {value!r} is not one raykube knows: use one of "
                f"{', '.join(frameworks.names())}"
            )
        return value

    @field_validator("predictor")
    @classmethod
    def _predictor(cls, value: str) -> str:
        if not _IMPORT_PATH.match(value):
            raise ValueError(
                f"predictor {value!r} is not module:Class (e.g. digits_serving:TorchDigits)"
            )
        return value

    def uses_local_working_dir(self) -> bool:
        """Whether ``workingDir`` is a folder on this machine (uploaded when the work starts)."""
        return bool(self.working_dir) and not URI.match(self.working_dir or "")

    def check_predictor_code(self, what: str) -> None:
        """Refuse a local ``workingDir`` that is not a folder or lacks the predictor's module.

        Raises:
            SpecError: naming ``what`` (the service or batch job), the folder and the module.
        """
        if not self.uses_local_working_dir():
            return
        folder = Path(str(self.working_dir))
        module = self.predictor.split(":")[0].replace(".", "/")
        if not folder.is_dir():
            raise SpecError(f"{what}: workingDir {folder} is not a folder",
                            "point workingDir at the folder holding the predictor's module")
        if not ((folder / f"{module}.py").is_file() or (folder / module).is_dir()):
            raise SpecError(
                f"{what}: predictor module {module!r} is not in {folder}",
                f"put {module}.py in workingDir, or fix predictor (module:Class)",
            )


P = TypeVar("P", bound=PredictorSpec)


def with_working_dir_of(spec: P, file: Path) -> P:
    """``spec`` with a relative local ``workingDir`` made absolute against its spec file."""
    if not spec.uses_local_working_dir():
        return spec
    folder = (file.parent / str(spec.working_dir)).resolve()
    return spec.model_copy(update={"working_dir": str(folder)})
