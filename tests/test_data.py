"""Ray Data: streamed training input and batch inference (README "Data at scale").

The local tests share one cluster made for data (``tests/specs/data.yaml``: two workers of 2
CPUs with Ray's smallest object store, 75 MiB each) and one digits-derived Parquet data set
several times bigger than those object stores together, written once per module.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import raykube
from raykube import worker
from raykube.data import columns_to_numpy
from raykube.data.sources import parse_source
from raykube.errors import DataError, SpecError
from raykube.specs.batch import parse_batch_spec
from raykube.specs.job import batch_rayjob

from conftest import ROOT, SPECS, run_cli

sys.path.insert(0, str(ROOT / "jobs"))

import digits_at_scale  # noqa: E402
from digits_data import write_digits_parquet  # noqa: E402

TRAIN_ROWS = 2_400_000
"""~650 MB in memory: over 4x the two workers' object stores (2 x 75 MiB)."""

TEST_ROWS = 100_000
ROW_BYTES = 8 + 64 * 4 + 8
"""One row in Arrow: the id, 64 float32 pixels, the label (no nulls, fixed-size lists)."""

ACCURACY_BAR = 0.90
MXNET_PYTHON = ROOT / ".venv-mxnet" / "bin" / "python"


# --- unit: sources, columns, the batch spec -------------------------------------------------

@pytest.mark.unit
def test_sources_are_checked_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        parse_source(str(tmp_path / "nowhere"))
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DataError, match="cannot tell the format"):
        parse_source(str(tmp_path / "a.txt"))
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.csv").write_text("x\n1\n")
    (tmp_path / "mixed" / "b.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="mixes parquet and csv|mixes csv and parquet"):
        parse_source(str(tmp_path / "mixed"))
    with pytest.raises(DataError, match="format 'avro'"):
        parse_source(str(tmp_path / "mixed"), "avro")
    with pytest.raises(DataError, match="relative path"):
        parse_source("data/train", check_local=False)
    assert parse_source(str(tmp_path / "mixed"), "csv").format == "csv"
    assert parse_source("s3://bucket/train/").format == "parquet"
    assert parse_source("gs://bucket/x.csv").format == "csv"


@pytest.mark.unit
def test_a_list_column_becomes_one_matrix_and_ragged_lists_are_refused() -> None:
    import numpy as np
    import pyarrow as pa

    fixed = pa.table({"v": pa.FixedSizeListArray.from_arrays(pa.array(np.arange(6.0)), 3),
                      "y": [1, 2]})
    arrays = columns_to_numpy(fixed.slice(1))
    assert arrays["v"].tolist() == [[3.0, 4.0, 5.0]] and arrays["y"].tolist() == [2]
    assert arrays["v"].flags.writeable
    ragged = pa.table({"v": pa.array([[1.0, 2.0], [3.0]])})
    with pytest.raises(DataError, match="different lengths"):
        columns_to_numpy(ragged)
    with pytest.raises(DataError, match="no column 'w'"):
        columns_to_numpy(fixed, ["w"])


def _batch(**fields: Any) -> dict[str, Any]:
    return {"name": "b", "framework": "torch", "predictor": "m:P", "checkpoint": "/c",
            "input": "/in", "output": "/out", "features": ["pixels"], **fields}


@pytest.mark.unit
def test_batch_spec_rules_name_the_field() -> None:
    with pytest.raises(SpecError, match="minSize"):
        parse_batch_spec(_batch(actorPool={"minSize": 3, "maxSize": 2}))
    with pytest.raises(SpecError, match="idColumn 'pixels' is also a feature"):
        parse_batch_spec(_batch(idColumn="pixels"))
    with pytest.raises(SpecError, match="different places"):
        parse_batch_spec(_batch(output="/in"))
    with pytest.raises(SpecError, match="acceleratorType"):
        parse_batch_spec(_batch(resources={"acceleratorType": "A100"}))
    with pytest.raises(SpecError, match="workingDir .* local folder"):
        batch_rayjob(parse_batch_spec(_batch(workingDir="/code", cluster="/c.yaml")))
    with pytest.raises(SpecError, match="needs a cluster"):
        batch_rayjob(parse_batch_spec(_batch()))


@pytest.mark.unit
def test_the_rayjob_entrypoint_carries_the_spec_quoted_for_the_shell() -> None:
    import shlex

    hostile = "/data/in'; touch /tmp/pwned; echo '"
    spec = parse_batch_spec(_batch(input=hostile, clusterSelector={"ray.io/cluster": "x"},
                                   workingDir="https://example.com/code.zip"))
    job = batch_rayjob(spec)
    words = shlex.split(job.entrypoint)
    assert words[:5] == ["python", "-m", "raykube", "batch", "run"]
    assert words[5] == "--spec-json" and len(words) == 7
    carried = parse_batch_spec(__import__("json").loads(words[6]))
    assert carried.input == hostile and carried.working_dir is None
    assert job.runtime_env == {"working_dir": "https://example.com/code.zip"}


# --- local: one data cluster, one big data set ----------------------------------------------

@pytest.fixture(autouse=True)
def _leave_each_cluster() -> Any:
    """The tests here drive two clusters from this process: leave the one a test connected to."""
    yield
    import ray

    ray.shutdown()


@pytest.fixture(scope="module")
def data_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from raykube.specs.cluster import StorageSpec, load_spec

    spec = load_spec(SPECS / "data.yaml")
    spec.storage = StorageSpec(path=str(tmp_path_factory.mktemp("data-storage")))
    cluster = raykube.up(spec, timeout=180)
    yield cluster
    cluster.down()


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_digits_parquet(tmp_path_factory.mktemp("digits"), TRAIN_ROWS, TEST_ROWS)


@pytest.fixture(scope="module")
def streamed(data_cluster: Any, digits_files: dict[str, str]) -> raykube.TrainResult:
    """The PyTorch example's streamed run over the big data set, one epoch."""
    return digits_at_scale.train_streamed(data_cluster, digits_files, epochs=1, name="streamed")


def _worker_object_store_bytes(cluster: Any) -> int:
    import ray

    from raykube.connection import ensure_connected

    ensure_connected(cluster)
    try:
        return int(sum(n["Resources"].get("object_store_memory", 0) for n in ray.nodes()
                       if n["Alive"] and n["Resources"].get("CPU", 0) > 0))
    finally:
        ray.shutdown()


@pytest.mark.local
def test_streamed_training_on_data_several_times_the_object_stores(
        data_cluster: Any, digits_files: dict[str, str], streamed: raykube.TrainResult) -> None:
    import pyarrow.dataset as ds

    rows = ds.dataset(digits_files["train"]).count_rows()
    data_bytes = rows * ROW_BYTES
    stores = _worker_object_store_bytes(data_cluster)
    assert data_bytes >= 4 * stores, (data_bytes, stores)
    assert streamed.metrics["test_accuracy"] >= ACCURACY_BAR
    memory = streamed.return_value["memory"]
    assert sum(m["rows"] for m in memory) == rows, "every row trained on once per epoch"
    share = data_bytes / len(memory)
    for m in memory:
        # A worker's own (anonymous) memory grows by a fixed amount while the pipeline fills
        # (measured: 130 MB, and in some runs a transient 120 MB more halfway through), not
        # with the rows it reads: a loop holding its share would grow by all of it (326 MB
        # here). What it maps besides (Ray's object store, shared by the node) is bounded by
        # the store.
        anon = [sample["anon"] for sample in m["samples"]]
        assert len(anon) >= 20, anon
        assert max(anon) - anon[0] < share, ([a >> 20 for a in anon], share)


@pytest.mark.local
@pytest.mark.parametrize("framework", ["tensorflow", "mxnet"])
def test_tensorflow_and_mxnet_stream_through_the_same_worker_api(
        data_cluster: Any, digits_files: dict[str, str], framework: str,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if framework == "mxnet":
        if not MXNET_PYTHON.exists():
            pytest.skip("no .venv-mxnet: create it with `bash scripts/setup-mxnet.sh`")
        monkeypatch.setenv("RAYKUBE_MXNET_PYTHON", str(MXNET_PYTHON))
    loop = digits_at_scale.STREAMED_LOOPS[framework]
    train = tmp_path / "train"  # the first 80,000 training rows; the held-out rows to test
    train.mkdir()
    for part in sorted(Path(digits_files["train"]).glob("*.parquet"))[:2]:
        (train / part.name).symlink_to(part)
    result = raykube.train(loop, framework=framework, cluster=data_cluster, num_workers=2,
                           datasets={"train": str(train), "test": digits_files["test"]},
                           config={"epochs": 2, "batch_size": 256}, name=f"streamed-{framework}")
    assert result.return_value["test_accuracy"] >= 0.85


def first_batch_loop() -> dict[str, Any]:
    """What one worker's first streamed batch holds."""
    batch = next(iter(worker.dataset("train").batches(4)))
    return {"columns": sorted(batch), "scaled": float(batch["pixels"].max())}


@pytest.mark.local
def test_a_dataset_with_preprocessing_mapped_on_streams_as_mapped(
        data_cluster: Any, digits_files: dict[str, str]) -> None:
    import raykube.data
    from raykube.connection import ensure_connected

    ensure_connected(data_cluster)

    def preprocess(batch: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        pixels = batch.column("pixels").combine_chunks()
        scaled = pa.FixedSizeListArray.from_arrays(
            pc.add(pc.multiply(pixels.flatten(), 0.0), 7.0), pixels.type.list_size)
        return batch.set_column(1, "pixels", scaled).append_column(
            "weight", pa.array([1.0] * batch.num_rows))

    mapped = raykube.data.read(digits_files["test"]).map_batches(preprocess,
                                                                 batch_format="pyarrow")
    result = raykube.train(first_batch_loop, cluster=data_cluster, num_workers=1,
                           datasets={"train": mapped}, name="mapped")
    assert result.return_value == {"columns": ["id", "label", "pixels", "weight"],
                                   "scaled": 7.0}


@pytest.mark.local
def test_batch_inference_writes_one_prediction_per_row_with_the_models_accuracy(
        data_cluster: Any, digits_files: dict[str, str], streamed: raykube.TrainResult,
        tmp_path: Path) -> None:
    output = str(tmp_path / "predictions")
    spec = digits_at_scale.batch_spec(str(streamed.checkpoint), digits_files["test"], output)
    result = run_cli("batch", "run", _write_spec(tmp_path, spec), "--cluster", data_cluster.name,
                     env={"RAYKUBE_QUIET": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = __import__("json").loads(result.stdout.strip().splitlines()[-1])
    assert summary["rows_in"] == summary["rows_out"] == TEST_ROWS
    rows, accuracy = digits_at_scale.accuracy_of(output, digits_files["test"])
    assert rows == TEST_ROWS  # joined by id: every input row has its prediction
    # The predictor loads the checkpoint the run reported its test accuracy with.
    assert abs(accuracy - streamed.metrics["test_accuracy"]) < 0.002, (
        accuracy, streamed.metrics)
    assert "rows/s" in result.stderr  # progress was said


def _write_spec(folder: Path, spec: Any) -> str:
    import yaml

    path = folder / "batch.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(by_alias=True, exclude_none=True)))
    return str(path)


def _ids(location: str) -> list[int]:
    import pyarrow.dataset as ds

    return ds.dataset(location).to_table(columns=["id"]).column("id").to_pylist()


@pytest.mark.local
def test_a_killed_actor_loses_and_duplicates_no_row(
        data_cluster: Any, digits_files: dict[str, str], streamed: raykube.TrainResult,
        tmp_path: Path) -> None:
    from ray.util.state import list_actors

    from raykube.connection import ensure_connected

    output = tmp_path / "predictions"
    spec = digits_at_scale.batch_spec(str(streamed.checkpoint), digits_files["train"],
                                      str(output), actorPool={"minSize": 2, "maxSize": 2})
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = raykube.batch_predict(spec, data_cluster)
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    ensure_connected(data_cluster)  # before the run's thread connects: one ray.init at a time
    runner = threading.Thread(target=run)
    runner.start()
    killed = None
    deadline = time.monotonic() + 300
    while runner.is_alive() and killed is None and time.monotonic() < deadline:
        written = list(output.glob("*.parquet")) if output.exists() else []
        actors = [a for a in list_actors(filters=[("state", "=", "ALIVE")])
                  if "PredictBlocks" in a.class_name]
        if written and actors:  # mid-run: some blocks written, more to come
            killed = actors[0].pid
            os.kill(killed, signal.SIGKILL)
        else:
            runner.join(0.2)
    runner.join(600)
    assert "error" not in outcome, outcome.get("error")
    assert killed is not None, "the run ended before an actor could be killed"
    ids = _ids(str(output))
    assert len(ids) == len(set(ids)) == TRAIN_ROWS, "no row duplicated"
    assert set(ids) == set(_ids(digits_files["train"])), "no row lost"
    assert outcome["result"].rows_out == TRAIN_ROWS


def _with_bad_rows(folder: Path, source: str) -> str:
    """500 real test rows as a ragged-list Parquet file, three of them bad."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    table = ds.dataset(source).head(500)
    pixels = table.column("pixels").to_pylist()
    pixels[10] = None
    pixels[20] = [float("nan")] * 64
    pixels[30] = pixels[30][:10]
    bad = table.set_column(1, "pixels", pa.array(pixels, pa.list_(pa.float32())))
    folder.mkdir()
    pq.write_table(bad, folder / "part-0.parquet")
    return str(folder)


@pytest.mark.local
def test_a_bad_row_is_named_or_set_aside(data_cluster: Any, digits_files: dict[str, str],
                                        streamed: raykube.TrainResult, tmp_path: Path) -> None:
    import pyarrow.dataset as ds

    source = _with_bad_rows(tmp_path / "input", digits_files["test"])
    ids = _ids(source)
    output = tmp_path / "out"
    spec = digits_at_scale.batch_spec(str(streamed.checkpoint), source, str(output),
                                      actorPool={"minSize": 1, "maxSize": 1})
    result = run_cli("batch", "run", _write_spec(tmp_path, spec), "--cluster", data_cluster.name)
    assert result.returncode == DataError.exit_code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    said = result.stderr[result.stderr.index("error: batch job"):]  # after Ray's own INFO lines
    assert f"row id={ids[10]}: feature 'pixels' is null" in said and "\nhint: " in said, said
    assert "badRows" in said
    assert not output.exists(), "nothing half-written is left"

    aside = tmp_path / "bad"
    spec = spec.model_copy(update={"bad_rows": str(aside)})
    written = raykube.batch_predict(spec, data_cluster)
    assert (written.rows_in, written.rows_out, written.bad_rows) == (500, 497, 3)
    reasons = ds.dataset(aside).to_table()
    by_id = dict(zip(reasons.column("id").to_pylist(), reasons.column("reason").to_pylist(),
                     strict=True))
    assert set(by_id) == {ids[10], ids[20], ids[30]}
    assert "null" in by_id[ids[10]] and "finite" in by_id[ids[20]]
    assert "10 values" in by_id[ids[30]]
    assert sorted(_ids(str(output)) + list(by_id)) == sorted(ids)


@pytest.fixture
def gpu_pool_cluster() -> Any:
    cluster = raykube.up(SPECS / "data-gpu.yaml", timeout=180)
    yield cluster
    cluster.down()


@pytest.mark.local
def test_a_gpu_pool_lands_on_the_gpu_group(gpu_pool_cluster: Any,
                                           digits_files: dict[str, str],
                                           streamed: raykube.TrainResult, tmp_path: Path) -> None:
    source = tmp_path / "small"
    source.mkdir()
    first = sorted(Path(digits_files["test"]).glob("*.parquet"))[0]
    (source / first.name).symlink_to(first)
    spec = digits_at_scale.batch_spec(
        str(streamed.checkpoint), str(source), str(tmp_path / "out"),
        resources={"cpus": 1, "gpus": 1, "acceleratorType": "A100"}, workerGroup="gpu",
        actorPool={"minSize": 1, "maxSize": 1})
    result = raykube.batch_predict(spec, gpu_pool_cluster)
    gpu_nodes = {n.node_id for n in gpu_pool_cluster.status().nodes if n.group == "gpu"}
    assert result.actor_nodes and set(result.actor_nodes) <= gpu_nodes
    assert result.rows_out == result.rows_in > 0


@pytest.mark.unit
def test_an_actor_the_cluster_cannot_place_is_refused_before_start(tmp_path: Path) -> None:
    from raykube.batch.run import check_placement
    from raykube.specs.cluster import load_spec

    cluster = load_spec(SPECS / "data.yaml")
    with pytest.raises(SpecError, match="no worker group 'gpu'|has no worker group"):
        check_placement(parse_batch_spec(_batch(workerGroup="gpu")), cluster)
    with pytest.raises(SpecError, match="holds an actor of 1 CPU / 1 GPU"):
        check_placement(parse_batch_spec(_batch(resources={"gpus": 1})), cluster)
    cluster = load_spec(SPECS / "data-gpu.yaml")
    with pytest.raises(SpecError, match="holds an actor of 1 CPU / 2 GPU"):
        check_placement(parse_batch_spec(_batch(resources={"gpus": 2})), cluster)
    with pytest.raises(SpecError, match=r"1 CPU / 1 GPU \(H100\)"):
        check_placement(parse_batch_spec(_batch(resources={"gpus": 1, "acceleratorType": "H100"})),
                        cluster)
    with pytest.raises(SpecError, match="holds an actor of 1 CPU / 1 GPU"):
        check_placement(parse_batch_spec(_batch(resources={"gpus": 1}, workerGroup="cpu")), cluster)
    check_placement(parse_batch_spec(_batch(resources={"gpus": 1}, workerGroup="gpu")), cluster)


@pytest.mark.unit
def test_cli_dataset_flags_and_a_missing_source_are_refused_before_start(tmp_path: Path) -> None:
    from conftest import assert_clean_error

    loop = tmp_path / "loop.py"
    loop.write_text("def loop():\n    pass\n")
    bad_flag = run_cli("train", f"{loop}:loop", "--dataset", "train")
    assert_clean_error(bad_flag, 2, "--dataset 'train' is not NAME=PATH")
    missing = run_cli("train", f"{loop}:loop", "--storage", str(tmp_path / "ckpt"),
                      "--cluster", "127.0.0.1:9", "--dataset", f"train={tmp_path / 'nowhere'}")
    assert_clean_error(missing, DataError.exit_code, "datasets['train']", "does not exist")


@pytest.mark.unit
def test_a_local_working_dir_needs_a_cluster_raykube_knows() -> None:
    spec = parse_batch_spec(_batch(predictor="digits_serving:TorchDigits",
                                   workingDir=str(ROOT / "jobs")))
    with pytest.raises(SpecError, match="uploads only to a cluster it knows"):
        raykube.batch_predict(spec, "127.0.0.1:9")
