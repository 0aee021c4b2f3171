"""Typed errors: every failure a user can cause or meet has a message and a hint.

The CLI catches only :class:`RaykubeError`, prints ``error:`` and ``hint:`` and exits with
``exit_code``; anything else is a bug and keeps its traceback.

Error tree::

    RaykubeError
    ├── SpecError            the cluster spec file is missing, malformed or invalid
    ├── ClusterError         a cluster is in the wrong state for the request
    │   ├── ClusterNotFound
    │   ├── ClusterExists
    │   ├── PortInUse
    │   ├── ReadyTimeout     it did not become ready in time (says what is missing)
    │   └── ScaleError       a replica count outside the group's bounds, or no such group
    ├── JobError             a submitted job could not run
    │   └── JobFailed        it ran and ended FAILED or STOPPED
    ├── TrainError           a training run was refused or failed
    ├── ServeError           a service failed to deploy, or is not on the cluster
    ├── DataError            a data set cannot be read, or a row cannot be predicted
    └── BackendError         Ray or Kubernetes answered with an error (the original is the cause)
"""

from __future__ import annotations


class RaykubeError(Exception):
    """Base of every error raykube raises on purpose.

    Attributes:
        message: what went wrong, naming the object at fault.
        hint: what the user can do about it (may be empty).
        exit_code: the CLI's exit status for this error.
        retryable: whether the same call may succeed later unchanged.
    """

    exit_code: int = 1
    retryable: bool = False

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\nhint: {self.hint}" if self.hint else self.message


class SpecError(RaykubeError):
    """A cluster spec that cannot be used. Raised before anything is created.

    Attributes:
        file: the spec file, when the spec came from one.
        problems: one ``(field path, message)`` pair per problem found.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        hint: str = "",
        *,
        file: str | None = None,
        problems: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.file = file
        self.problems = problems or []


class ClusterError(RaykubeError):
    """A cluster is not in the state the request needs."""


class ClusterNotFound(ClusterError):
    """No cluster of that name is known to the backend."""

    exit_code = 3


class ClusterExists(ClusterError):
    """``up`` of a name that is already running."""

    exit_code = 4


class PortInUse(ClusterError):
    """A port the cluster needs is taken by another process."""

    exit_code = 5


class ReadyTimeout(ClusterError):
    """The cluster, or one of its groups, did not become ready before the deadline."""

    exit_code = 6
    retryable = True


class ScaleError(ClusterError):
    """A scale request outside a group's bounds, or for a group the cluster does not have."""

    exit_code = 2


class JobError(RaykubeError):
    """A job could not be submitted or followed."""


class JobFailed(JobError):
    """A job ran and ended FAILED or STOPPED."""

    exit_code = 7


class TrainError(RaykubeError):
    """A training run was refused before it started, or failed."""


class ServeError(RaykubeError):
    """A service could not be deployed (a version failed to start), or is not on the cluster."""

    exit_code = 9


class DataError(RaykubeError):
    """A data set that cannot be read (missing, of an unknown format, a column not there), or a
    batch-inference row the predictor cannot take (named by its id)."""

    exit_code = 11


class BackendError(RaykubeError):
    """Ray or Kubernetes refused a request; the original exception is the ``__cause__``."""

    exit_code = 8

    def __init__(self, message: str, hint: str = "", *, retryable: bool = False) -> None:
        super().__init__(message, hint)
        self.retryable = retryable
