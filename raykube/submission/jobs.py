"""Ray jobs on a cluster: submit an entrypoint, follow it, stop it.

A thin, typed layer over Ray's Jobs API (``JobSubmissionClient``) that resolves the cluster
(:func:`raykube.target.resolve`), sends the auth token, checks the working dir before uploading
it, and turns a job that ends FAILED or STOPPED into :class:`JobFailed` when asked to wait, so
CI can gate on it. The same calls reach a local cluster and a KubeRay one (through raykube's
port-forward); a RayJob, KubeRay's own way to run a job, is :mod:`raykube.submission.rayjob`.

Example::

    job = raykube.submit("local", "python train_torch.py", working_dir="jobs")
    for chunk in job.stream_logs():
        print(chunk, end="")
    job.wait(timeout=600)      # raises JobFailed unless it SUCCEEDED
"""

from __future__ import annotations

import asyncio
import queue
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

import requests

from raykube.dashboard import jobs_client
from raykube.errors import BackendError, JobError, JobFailed, RaykubeError
from raykube.output import html_table
from raykube.target import ClusterRef, resolve
from raykube.waiting import wait_for


class JobState(StrEnum):
    """Ray's job states; the last three are terminal."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        """Whether the job has ended."""
        return self in (JobState.STOPPED, JobState.SUCCEEDED, JobState.FAILED)


@dataclass(frozen=True)
class JobInfo:
    """What Ray knows of a job now."""

    job_id: str
    state: JobState
    message: str
    entrypoint: str
    driver_exit_code: int | None
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, details: Any, job_id: str | None = None) -> JobInfo:
        """From Ray's ``JobDetails`` (``job_id``: the id it was asked by, if any)."""
        return cls(
            job_id=job_id or details.submission_id or details.job_id or "?",
            state=JobState(str(details.status)),
            message=details.message or "",
            entrypoint=details.entrypoint,
            driver_exit_code=getattr(details, "driver_exit_code", None),
            metadata=dict(getattr(details, "metadata", None) or {}),
        )


def check_working_dir(path: str, excludes: list[str] | None = None) -> str:
    """Refuse, before anything is sent, a working dir that does not exist or whose package
    Ray would not upload; return it absolute. The package is measured as Ray's own packaging
    makes it (``.gitignore``, ``.rayignore`` and ``excludes`` honoured, zipped), so raykube
    refuses exactly what Ray would.

    Raises:
        JobError: naming the folder, its package's size and Ray's limit.
    """
    from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE, create_package

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise JobError(
            f"working dir {path!r} does not exist or is not a folder",
            "pass the folder holding your entrypoint's code, e.g. --working-dir jobs",
        )
    with tempfile.TemporaryDirectory() as scratch:
        package = Path(scratch) / "package.zip"
        create_package(str(folder), package, include_gitignore=True, excludes=excludes or [],
                       logger=None)
        size = package.stat().st_size
    if size >= GCS_STORAGE_MAX_SIZE:
        _too_large(path, f"{size / 2**20:.2f}MiB", f"{GCS_STORAGE_MAX_SIZE / 2**20:.2f}MiB")
    return str(folder.resolve())


def _too_large(path: str | None, size: str, limit: str) -> NoReturn:
    raise JobError(
        f"working dir {path!r} zips to {size}; Ray's Jobs API uploads at most {limit}",
        "keep data and checkpoints out of the working dir (put them on the cluster's storage "
        "path), list them in .gitignore or .rayignore, or in runtime_env 'excludes'",
    )


PACKAGE_TOO_LARGE = "exceeds the maximum size"
"""What the cluster's Ray says of a working dir package over its own limit (which may differ
from this machine's)."""


class Job:
    """A job submitted to a cluster. Get one from :func:`submit` or :func:`get_job`."""

    def __init__(self, job_id: str, client: Any) -> None:
        self.job_id = job_id
        self._client = client

    def __repr__(self) -> str:
        return f"Job({self.job_id!r})"

    def _repr_html_(self) -> str:
        """A notebook's view: the job's state now."""
        try:
            info = self.info()
        except RaykubeError as exc:
            return html_table(f"job {self.job_id}", [("state", f"unknown: {exc.message}")])
        return html_table(f"job {self.job_id}", [
            ("state", info.state.value), ("entrypoint", info.entrypoint),
            ("message", info.message or None), ("exit code", info.driver_exit_code)])

    def info(self) -> JobInfo:
        """The job's state, message and exit code now.

        Raises:
            JobError: no such job.
            BackendError: the dashboard cannot be reached now (retryable: it may be
                restarting, or a port-forward reconnecting; the job runs on without it).
        """
        try:
            details = self._client.get_job_info(self.job_id)
        except requests.RequestException as exc:
            raise BackendError(f"the dashboard did not answer about job {self.job_id}: "
                               f"{type(exc).__name__}", retryable=True) from exc
        except RuntimeError as exc:
            raise JobError(f"no job {self.job_id!r} on this cluster: {exc}",
                           "`raykube job list` shows the jobs") from None
        return JobInfo.of(details, self.job_id)

    def status(self) -> JobState:
        """The job's state now."""
        return self.info().state

    def wait(self, timeout: float = 3600.0, *, check: bool = True) -> JobInfo:
        """Wait until the job ends.

        Args:
            timeout: seconds to wait.
            check: raise :class:`JobFailed` when it ends FAILED or STOPPED.

        Raises:
            JobFailed: the job failed or was stopped (with Ray's message).
            ReadyTimeout: it was still running at the deadline.
        """
        info = wait_for(
            lambda: (lambda i: i if i.state.is_terminal else None)(self.info()),
            timeout=timeout, what=f"job {self.job_id} to end", interval=0.5,
        )
        if check and info.state is not JobState.SUCCEEDED:
            code = f" (exit code {info.driver_exit_code})" if info.driver_exit_code else ""
            raise JobFailed(
                f"job {self.job_id} ended {info.state.value}{code}: {info.message.strip()}",
                f"see its output: raykube job logs {self.job_id}",
            )
        return info

    def logs(self) -> str:
        """Everything the job has printed so far."""
        return str(self._client.get_job_logs(self.job_id))

    def stream_logs(self, *, reconnect_timeout: float = 120.0) -> Iterator[str]:
        """Yield the job's output as it is printed, until the job ends.

        When the stream drops while the job runs on (the dashboard restarted, a port-forward
        reconnected), it is opened again, for up to ``reconnect_timeout`` s without an answer,
        and resumes after the last character already yielded: Ray replays a job's log from its
        start on every stream.

        Raises:
            ReadyTimeout: the dashboard did not answer again in time.
        """
        sent = 0
        pause = 0.5
        last_pass = False
        while True:
            received = 0
            dropped = False
            try:
                for chunk in self._tail():
                    fresh = chunk[max(0, sent - received):]
                    received += len(chunk)
                    if fresh:
                        sent += len(fresh)
                        yield fresh
            except BackendError:
                dropped = True
            if not dropped and last_pass:
                return
            info = wait_for(self.info, timeout=reconnect_timeout,
                            what=f"the dashboard to answer about job {self.job_id}", interval=1.0)
            if info.state.is_terminal:
                if not dropped:
                    return  # the stream ended with the job: all of it was yielded
                last_pass = True  # what it printed after the drop
            if dropped:
                time.sleep(pause)  # a backoff between attempts, not a wait for a condition
                pause = min(pause * 2, 5.0)

    def _tail(self) -> Iterator[str]:
        """One pass of Ray's log stream of this job (from the start of its log)."""
        chunks: queue.Queue[str | BaseException | None] = queue.Queue()

        async def pump() -> None:
            async for chunk in self._client.tail_job_logs(self.job_id):
                chunks.put(chunk)

        def run() -> None:
            try:
                asyncio.run(pump())
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
                chunks.put(exc)
            finally:
                chunks.put(None)

        threading.Thread(target=run, daemon=True, name=f"logs-{self.job_id}").start()
        while (item := chunks.get()) is not None:
            if isinstance(item, BaseException):
                raise BackendError(f"lost the log stream of job {self.job_id}: {item}",
                                   retryable=True) from item
            yield item

    def stop(self) -> bool:
        """Ask Ray to stop the job; returns whether it was still running."""
        return bool(self._client.stop_job(self.job_id))


def client_for(cluster: ClusterRef) -> Any:
    """A Jobs API client for ``cluster`` (a handle, a name, or a dashboard ``http://`` URL)."""
    return jobs_client(*resolve(cluster).dashboard())


def submit(
    cluster: ClusterRef,
    entrypoint: str,
    *,
    working_dir: str | None = None,
    runtime_env: dict[str, Any] | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    memory: int | None = None,
    metadata: dict[str, str] | None = None,
    submission_id: str | None = None,
) -> Job:
    """Submit ``entrypoint`` (a shell command) as a Ray job on ``cluster``.

    Args:
        cluster: a :class:`Cluster`, a cluster name, a dashboard URL, or None for the only
            running local cluster.
        entrypoint: the command, e.g. ``"python train_torch.py --epochs 5"``.
        working_dir: a local folder uploaded and used as the job's working dir.
        runtime_env: Ray runtime env (pip, env_vars, py_modules, ...); ``working_dir`` is merged.
        num_cpus, num_gpus, resources, memory: what the entrypoint itself reserves (memory in
            bytes), as ``ray job submit``'s ``--entrypoint-*`` options.
        metadata: string labels kept with the job (``JobInfo.metadata``).
        submission_id: a chosen job id (default: Ray picks one).

    Returns:
        A :class:`Job` handle.

    Raises:
        JobError: bad working dir; ClusterNotFound: unknown cluster; BackendError: Ray refused.
    """
    env = dict(runtime_env or {})
    if working_dir is not None:
        env["working_dir"] = check_working_dir(working_dir, env.get("excludes"))
    client = client_for(cluster)
    try:
        job_id = client.submit_job(
            entrypoint=entrypoint, runtime_env=env or None, submission_id=submission_id,
            entrypoint_num_cpus=num_cpus, entrypoint_num_gpus=num_gpus,
            entrypoint_resources=resources, entrypoint_memory=memory, metadata=metadata,
        )
    except (RuntimeError, ValueError) as exc:
        text = str(exc)
        if PACKAGE_TOO_LARGE in text:
            found = re.search(r"Package size \(([^)]*)\) exceeds the maximum size of ([^.]*)",
                              text)
            _too_large(working_dir, *(found.groups() if found else ("?", "Ray's limit")))
        raise BackendError(f"the cluster refused the job: {text[:2000]}") from exc
    return Job(job_id, client)


def get_job(cluster: ClusterRef, job_id: str) -> Job:
    """A handle on job ``job_id`` of ``cluster``."""
    job = Job(job_id, client_for(cluster))
    job.info()  # raises JobError when there is no such job
    return job


def list_jobs(cluster: ClusterRef) -> list[JobInfo]:
    """Every job of ``cluster``, oldest first."""
    details = client_for(cluster).list_jobs()
    return [JobInfo.of(d) for d in sorted(details, key=lambda d: d.start_time or 0)]
