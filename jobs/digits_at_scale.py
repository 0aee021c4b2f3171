"""Data bigger than memory: write digits-derived Parquet, train on it streamed, predict it all.

    python jobs/digits_at_scale.py --cluster local --rows 2000000      # ~540 MB in memory
    ray job submit --working-dir jobs -- python digits_at_scale.py --rows 2000000

1. Writes ``--rows`` training rows and a tenth as many test rows (``digits_data``: jittered,
   shifted copies of scikit-learn's real digits; test rows from held-out images only), a file
   at a time.
2. Trains the PyTorch MLP of ``train_torch.py`` with the files streamed to the workers by Ray
   Data (``raykube.train(datasets=...)``, ``worker.dataset("train")``): no worker loads the
   data set, each reads its share a block at a time.
3. Runs batch inference over the test files with the trained checkpoint and the serving
   predictor (``digits_serving:TorchDigits``), one prediction per row next to its id.
4. Prints one JSON line: rows in and out, accuracy, seconds, peak memory per worker.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import raykube
from raykube import worker
from raykube.specs.batch import BatchPredictSpec

from common import ACCURACY_BAR
from digits_data import write_digits_parquet
from train_mxnet import build_net
from train_tensorflow import build_model as build_keras_model
from train_torch import build_model, model_of

HERE = Path(__file__).resolve().parent


def streamed_loop(config: dict[str, Any]) -> dict[str, Any]:
    """The PyTorch loop over streamed batches: one pass of ``batches()`` per epoch."""
    import torch

    torch.set_num_threads(1)
    model = worker.prepare(build_model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    loss_fn = torch.nn.CrossEntropyLoss()
    start = 0
    state = worker.restore()
    if state:
        model_of(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"] + 1
    rss_before = _peak_rss_bytes()
    rows, samples = 0, [_rss_bytes()]
    for epoch in range(start, config["epochs"]):
        started, epoch_rows = time.monotonic(), 0
        model.train()
        for batch in worker.dataset("train").batches(
                config["batch_size"], columns=["pixels", "label"], shuffle_buffer=8192):
            optimizer.zero_grad()
            loss = loss_fn(model(batch["pixels"]), batch["label"])
            loss.backward()
            optimizer.step()
            epoch_rows += len(batch["label"])
            if epoch_rows % (20 * config["batch_size"]) == 0:
                samples.append(_rss_bytes())  # memory now, every 20 batches
        rows += epoch_rows
        seconds = time.monotonic() - started
        worker.report(
            {"epoch": epoch, "loss": loss.item(), "test_accuracy": evaluate(model),
             "rows_per_s": epoch_rows / seconds, "worker_rows": epoch_rows},
            state={"epoch": epoch,
                   "model": {k: v.cpu() for k, v in model_of(model).state_dict().items()},
                   "optimizer": optimizer.state_dict()},
        )
    peaks = worker.gather({"before": rss_before, "peak": _peak_rss_bytes(), "rows": rows,
                           "samples": samples}, "memory")
    return {"memory": peaks}


def streamed_tensorflow_loop(config: dict[str, Any]) -> dict[str, Any]:
    """The same streamed input in TensorFlow: Keras' ``fit`` over ``tf_dataset``."""
    import numpy as np

    model = worker.prepare(build_keras_model)
    data = worker.dataset("train").tf_dataset(["pixels"], "label", config["batch_size"],
                                              shuffle_buffer=4096)
    model.fit(data, epochs=config["epochs"], verbose=0)
    return {"test_accuracy": streamed_accuracy(
        lambda X: np.argmax(model(X, training=False).numpy(), axis=1))}


def streamed_mxnet_loop(config: dict[str, Any]) -> dict[str, Any]:
    """The same streamed input in MXNet: NumPy batches into Gluon, ``dist_sync`` steps (every
    batch full, so every worker pushes the same number of times)."""
    import mxnet as mx
    from mxnet import autograd, gluon

    net = worker.prepare(build_net())
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.003},
                            kvstore=worker.mxnet_kvstore())
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    world = worker.context().world_size
    for _ in range(config["epochs"]):
        for batch in worker.dataset("train").batches(config["batch_size"], drop_last=True,
                                                     columns=["pixels", "label"]):
            with autograd.record():
                loss = loss_fn(net(mx.nd.array(batch["pixels"])), mx.nd.array(batch["label"]))
            loss.backward()
            trainer.step(config["batch_size"] * world)
    return {"test_accuracy": streamed_accuracy(
        lambda X: net(mx.nd.array(X)).argmax(axis=1).asnumpy().astype(int))}


def streamed_accuracy(predict: Any) -> float:
    """Accuracy of ``predict`` (features -> labels) over the streamed test set, all workers."""

    correct = total = 0
    for batch in worker.dataset("test").batches(8192, columns=["pixels", "label"]):
        predicted = _as_numpy(predict(batch["pixels"]))
        correct += int((predicted == _as_numpy(batch["label"])).sum())
        total += len(predicted)
    counts = worker.gather([correct, total], "accuracy")
    return sum(c for c, _ in counts) / max(1, sum(t for _, t in counts))


def _as_numpy(values: Any) -> Any:
    """A batch column as NumPy, wherever it lives (a torch tensor may be on a GPU)."""
    import numpy as np

    return values.cpu().numpy() if hasattr(values, "cpu") else np.asarray(values)


def evaluate(model: Any) -> float:
    """The torch model's accuracy over the streamed test set."""
    import torch

    model.eval()
    with torch.no_grad():
        return streamed_accuracy(lambda X: model(X).argmax(dim=1).cpu())


def _rss_bytes() -> dict[str, int]:
    """This process's resident memory now, by kind (Linux): its own (anonymous) memory, and
    the shared memory and files it maps (Ray's object store among them)."""
    kinds = {"RssAnon:": "anon", "RssFile:": "file", "RssShmem:": "shmem"}
    found = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, *value = line.split()
            if key in kinds:
                found[kinds[key]] = int(value[0]) * 1024
    return found


def _peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


STREAMED_LOOPS = {"torch": streamed_loop, "tensorflow": streamed_tensorflow_loop,
                  "mxnet": streamed_mxnet_loop}
"""One loop per framework over the same ``worker.dataset`` calls."""


def train_streamed(cluster: Any, paths: dict[str, str], *, epochs: int = 1,
                   storage: str | None = None, name: str | None = None,
                   workers: int = 2, gpus_per_worker: float = 0) -> raykube.TrainResult:
    """The streamed run, as the tests and this job start it."""
    return raykube.train(
        streamed_loop, framework="torch", cluster=cluster, num_workers=workers,
        gpus_per_worker=gpus_per_worker,
        datasets={"train": paths["train"], "test": paths["test"]}, storage_path=storage,
        name=name, config={"epochs": epochs, "lr": 0.003, "batch_size": 1024},
    )


def batch_spec(checkpoint: str, input_path: str, output: str, *, name: str = "digits-batch",
               **fields: Any) -> BatchPredictSpec:
    """The batch spec that predicts ``input_path`` with the serving predictor."""
    from raykube.specs.batch import parse_batch_spec

    return parse_batch_spec({
        "name": name, "framework": "torch", "predictor": "digits_serving:TorchDigits",
        "workingDir": str(HERE), "checkpoint": checkpoint, "input": input_path,
        "output": output, "idColumn": "id", "features": ["pixels"], "batchSize": 4096,
        "actorPool": {"minSize": 1, "maxSize": 2}, "resources": {"cpus": 1}, **fields,
    })


def accuracy_of(output: str, labelled: str) -> tuple[int, float]:
    """(rows, accuracy) of the predictions in ``output`` joined by id with ``labelled``."""
    import pyarrow.dataset as ds

    predicted = ds.dataset(output).to_table(columns=["id", "prediction"])
    truth = ds.dataset(labelled).to_table(columns=["id", "label"])
    joined = predicted.join(truth, "id")
    right = sum(p == t for p, t in zip(joined.column("prediction").to_pylist(),
                                       joined.column("label").to_pylist(), strict=True))
    return joined.num_rows, right / max(1, joined.num_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", default=None, help="cluster name (default: this job's)")
    parser.add_argument("--rows", type=int, default=2_000_000, help="training rows")
    parser.add_argument("--epochs", type=int, default=1, help="epochs (default 1)")
    parser.add_argument("--data", default=None, help="folder for the data set (default: temp)")
    parser.add_argument("--storage", default=None, help="checkpoint folder (default: spec's)")
    args = parser.parse_args()
    started = time.monotonic()
    folder = args.data or tempfile.mkdtemp(prefix="raykube-digits-")
    paths = write_digits_parquet(folder, args.rows, max(1, args.rows // 10))
    result = train_streamed(args.cluster, paths, epochs=args.epochs, storage=args.storage)
    output = os.path.join(folder, f"predictions-{int(time.time())}")
    batch = raykube.batch_predict(batch_spec(str(result.checkpoint), paths["test"], output),
                                  args.cluster)
    rows, accuracy = accuracy_of(output, paths["test"])
    summary = {
        "rows_in": batch.rows_in, "rows_out": batch.rows_out, "joined_by_id": rows,
        "train_rows": args.rows, "test_accuracy": round(accuracy, 4),
        "train_rows_per_s": round(result.metrics["rows_per_s"], 1),
        "batch_rows_per_s": round(batch.rows_per_s, 1),
        "peak_rss_mb": [round(m["peak"] / 2**20) for m in result.return_value["memory"]],
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary, sort_keys=True))
    if accuracy < ACCURACY_BAR:
        print(f"test accuracy {accuracy:.3f} is below {ACCURACY_BAR}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
