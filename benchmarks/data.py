"""Ray Data figures: batch inference and streamed training against one-process baselines.

Measured on a cluster of the data tests' shape (``tests/specs/data.yaml``: two workers of 2
CPUs, Ray's smallest object store), over one digits-derived Parquet data set (``jobs/
digits_data.py``), each pair in the same run:

- batch inference rows/s with a pool of 1 and of 2 actors, against a plain loop in one process
  over the same files (read a file, predict it with the same predictor, write its Parquet);
- streamed training rows/s (``raykube.train(datasets=...)``, 1 and 2 workers) against the same
  model trained in one process from arrays already in memory, at the same batch size.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "jobs"))

BATCH_SIZE = 1024


def data_spec(name: str, storage: str) -> Any:
    from raykube.specs.cluster import StorageSpec, load_spec

    spec = load_spec(ROOT / "tests" / "specs" / "data.yaml")
    spec.name, spec.storage = name, StorageSpec(path=storage)
    return spec


def plain_batch_rows_per_s(checkpoint: str, source: str, output: Path) -> float:
    """One process: each file read, predicted with the serving predictor, written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from digits_serving import TorchDigits
    from raykube.data import columns_to_numpy, feature_matrix

    started = time.monotonic()
    predictor = TorchDigits(checkpoint)
    output.mkdir(parents=True)
    rows = 0
    for path in sorted(Path(source).glob("*.parquet")):
        table = pq.read_table(path)
        matrix = feature_matrix(columns_to_numpy(table, ["pixels"]), ["pixels"])
        predictions = predictor.predict(matrix)
        pq.write_table(pa.table({"id": table.column("id"), "prediction": predictions}),
                       output / path.name)
        rows += table.num_rows
    return rows / (time.monotonic() - started)


def in_memory_training_rows_per_s(source: str) -> float:
    """The streamed example's model, optimiser and batch size, trained in one process from
    arrays loaded before the clock starts."""
    import pyarrow.dataset as ds
    import torch

    from raykube.data import columns_to_numpy
    from train_torch import build_model

    torch.set_num_threads(1)
    arrays = columns_to_numpy(ds.dataset(source).to_table(columns=["pixels", "label"]))
    X, y = torch.from_numpy(arrays["pixels"]), torch.from_numpy(arrays["label"])
    model = build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    loss_fn = torch.nn.CrossEntropyLoss()
    started = time.monotonic()
    order = torch.randperm(len(X))
    for start in range(0, len(X), BATCH_SIZE):
        batch = order[start:start + BATCH_SIZE]
        optimizer.zero_grad()
        loss_fn(model(X[batch]), y[batch]).backward()
        optimizer.step()
    return len(X) / (time.monotonic() - started)


def bench_data(*, quick: bool, repeats: int, progress: Callable[[str], None]
               ) -> dict[str, Any]:
    """Every figure and its ratio (medians of ``repeats``)."""
    import statistics

    import ray

    import digits_at_scale
    import raykube
    from digits_data import write_digits_parquet

    rows = 50_000 if quick else 1_000_000
    folder = Path(tempfile.mkdtemp(prefix="rk-bench-data-"))
    try:
        progress(f"data: writing {rows:,} digits-derived rows")
        paths = write_digits_parquet(folder / "digits", rows, max(1, rows // 10))
        cluster = raykube.up(data_spec("rk-bench-data", str(folder / "storage")), timeout=180)
        try:
            figures: dict[str, list[float]] = {}

            def record(key: str, value: float) -> None:
                figures.setdefault(key, []).append(value)

            checkpoint = ""
            for repeat in range(repeats):
                progress(f"data: in-memory training, run {repeat + 1}")
                record("in_memory_train_rows_per_s", in_memory_training_rows_per_s(
                    paths["train"]))
                for workers in (1, 2):
                    progress(f"data: streamed training, {workers} worker(s), run {repeat + 1}")
                    result = digits_at_scale.train_streamed(
                        cluster, paths, workers=workers, name=f"bench-{workers}-{repeat}")
                    ray.shutdown()
                    record(f"streamed_{workers}w_train_rows_per_s",
                           result.metrics["rows_per_s"] * workers)
                    checkpoint = str(result.checkpoint)
                progress(f"data: plain batch loop, run {repeat + 1}")
                record("plain_batch_rows_per_s", plain_batch_rows_per_s(
                    checkpoint, paths["train"], folder / f"plain-{repeat}"))
                for actors in (1, 2):
                    progress(f"data: batch inference, {actors} actor(s), run {repeat + 1}")
                    spec = digits_at_scale.batch_spec(
                        checkpoint, paths["train"], str(folder / f"out-{actors}-{repeat}"),
                        actorPool={"minSize": actors, "maxSize": actors})
                    written = raykube.batch_predict(spec, cluster)
                    ray.shutdown()
                    record(f"batch_{actors}a_rows_per_s", written.rows_per_s)
        finally:
            cluster.down()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result = {"rows": rows, **{k: round(statistics.median(v), 1) for k, v in figures.items()}}
    result["batch_1a_over_plain"] = result["batch_1a_rows_per_s"] / result["plain_batch_rows_per_s"]
    result["batch_2a_over_plain"] = result["batch_2a_rows_per_s"] / result["plain_batch_rows_per_s"]
    result["batch_2a_over_1a"] = result["batch_2a_rows_per_s"] / result["batch_1a_rows_per_s"]
    memory = result["in_memory_train_rows_per_s"]
    result["streamed_1w_over_in_memory"] = result["streamed_1w_train_rows_per_s"] / memory
    result["streamed_2w_over_in_memory"] = result["streamed_2w_train_rows_per_s"] / memory
    return result
