"""Where a data set lives, checked before anything runs, and read lazily as a Ray Dataset.

A source is a local path (a file or a folder of files), or a URI any pyarrow filesystem reads
(``s3://``, ``gs://``, ``abfs://``, ``hdfs://``, ``file://``). The format comes from the files'
suffix (``.parquet``, ``.csv``, ``.npy``) or is given. A local path is checked here: it exists,
holds files of its format, and is named absolute, since Ray reads it on the nodes, not where the
driver stands. On Kubernetes the path is the pods' (the storage claim), so the driver leaves it
to them (``check_local=False``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raykube.errors import DataError

FORMATS: dict[str, str] = {"parquet": ".parquet", "csv": ".csv", "numpy": ".npy"}
"""Formats raykube reads, with their file suffix."""

_URI = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)

READ_CPUS = 0.25
"""CPUs one read task reserves: a read is mostly I/O and decoding. With Ray's default of 1, a
node whose CPUs the training workers hold could run no read at all, and a small cluster waited
for the autoscaler before its first batch."""


@dataclass(frozen=True)
class DataSource:
    """A data set's location and format."""

    location: str
    format: str

    def __str__(self) -> str:
        return self.location


def parse_source(location: str, format: str | None = None, *, what: str = "data set",
                 check_local: bool = True) -> DataSource:
    """Check ``location`` and name its format.

    Args:
        location: a local path or a URI.
        format: 'parquet', 'csv' or 'numpy'; default from the suffix of the path or its files.
        what: how errors name it (``input``, ``datasets['train']``).
        check_local: whether a local path is on this machine (it is on every node of a local
            cluster; on Kubernetes it is the pods').

    Raises:
        DataError: naming the source, what is wrong and the fix.
    """
    if not isinstance(location, str) or not location.strip():
        raise DataError(f"{what}: {location!r} is not a path or URI",
                        "give a folder or file path, or a URI such as s3://bucket/data/")
    if format is not None and format not in FORMATS:
        raise DataError(f"{what}: format {format!r} is not one raykube reads",
                        f"use one of: {', '.join(FORMATS)}")
    if _URI.match(location):
        return DataSource(location, format or _format_of_name(location) or "parquet")
    path = Path(location).expanduser()
    if not path.is_absolute():
        if not check_local:
            raise DataError(f"{what}: {location!r} is a relative path; the nodes read it, and "
                            "they do not share this folder", "give an absolute path")
        path = path.absolute()
    if not check_local:
        return DataSource(str(path), format or _format_of_name(str(path)) or "parquet")
    if not path.exists():
        raise DataError(f"{what}: {str(path)!r} does not exist",
                        "check the path (every node of a local cluster reads this machine's "
                        "files), or write the data set first")
    found = format or _format_on_disk(path, what)
    suffix = FORMATS[found]
    if path.is_dir() and not any(path.rglob(f"*{suffix}")):
        raise DataError(f"{what}: folder {str(path)!r} holds no {suffix} file",
                        f"point at the folder of the {found} files")
    return DataSource(str(path), found)


def _format_of_name(name: str) -> str | None:
    lowered = name.lower().rstrip("/")
    for fmt, suffix in FORMATS.items():
        if lowered.endswith(suffix):
            return fmt
    return None


def _format_on_disk(path: Path, what: str) -> str:
    named = _format_of_name(path.name)
    if named:
        return named
    if path.is_dir():
        present = [fmt for fmt, suffix in FORMATS.items() if any(path.rglob(f"*{suffix}"))]
        if len(present) == 1:
            return present[0]
        if present:
            raise DataError(f"{what}: folder {str(path)!r} mixes {' and '.join(present)} files",
                            "pass format=, or keep one format per folder")
    raise DataError(f"{what}: cannot tell the format of {str(path)!r}",
                    f"name files with a suffix ({', '.join(FORMATS.values())}) or pass format=")


def read(source: str | DataSource, *, format: str | None = None, shuffle_files: bool = False,
         check_local: bool = True, read_cpus: float = READ_CPUS) -> Any:
    """A Ray Dataset of ``source``, read lazily: blocks are read as they are consumed.

    Call it connected to the cluster (``raykube.connect``), or from a job running on it.

    Args:
        source: a path or URI (see :func:`parse_source`).
        format: 'parquet', 'csv' or 'numpy' where the suffix does not tell.
        shuffle_files: read the files in a new random order at every pass (each epoch), the
            cheap half of a per-epoch shuffle; ``DatasetShard.batches(shuffle_buffer=...)``
            mixes rows within what it holds.
        check_local: see :func:`parse_source`.
        read_cpus: CPUs each read task reserves (:data:`READ_CPUS`).

    Raises:
        DataError: the source is missing, empty or of an unknown format.
    """
    import ray.data

    parsed = source if isinstance(source, DataSource) else parse_source(
        source, format, check_local=check_local)
    readers: dict[str, Callable[..., Any]] = {
        "parquet": ray.data.read_parquet, "csv": ray.data.read_csv, "numpy": ray.data.read_numpy,
    }
    # read_numpy takes no named resources in Ray 2.60: its tasks keep Ray's default.
    options: dict[str, Any] = {} if parsed.format == "numpy" else {"num_cpus": read_cpus}
    if shuffle_files:
        options["shuffle"] = "files"
    return readers[parsed.format](parsed.location, **options)


def is_dataset(value: Any) -> bool:
    """Whether ``value`` is already a Ray Dataset (passed through as it is)."""
    try:
        from ray.data import Dataset
    except ImportError:  # pragma: no cover - ray is a dependency
        return False
    return isinstance(value, Dataset)


def quiet_ray_data() -> None:
    """Keep Ray Data's per-operator progress lines in its log files unless the caller asked for
    detail (``raykube -v``): raykube says the progress of its own work."""
    import logging

    import ray.data

    from raykube.progress import verbose

    if not verbose():
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
