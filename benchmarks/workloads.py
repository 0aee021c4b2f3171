"""The training work every scaling and overhead figure times: the same loop under raykube and
under each framework's own launcher.

A compute-bound MLP (64 -> 1024 -> 1024 -> 10) on scikit-learn's digits, one thread per worker,
data-parallel with the framework's own synchronisation (DDP over gloo, MultiWorkerMirrored,
ps-lite ``dist_sync``). Each step's wall time is recorded; steady-state throughput counts the
steps after ``warmup`` only, so start-up (process launch, rendezvous, first-step compilation)
is reported apart.

Every function takes its rank and world size and returns a :class:`Timing` as a dict, so the
launcher (raykube or native) is the only thing that differs between two runs.
"""

from __future__ import annotations

import os
import time
from typing import Any

HIDDEN = 1024


def _data(rank: int, world: int, per_worker: int) -> tuple[Any, Any]:
    """``per_worker`` rows for this rank (the digits cycled), float32 features, int64 labels."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    index = (np.arange(per_worker) + rank * per_worker) % len(X)
    return X[index], y[index]


def timing(step_seconds: list[float], first_step_at: float, batch: int, world: int,
           warmup: int) -> dict[str, Any]:
    """Throughput after warm-up (samples/s over every worker) and when the first step began."""
    steady = step_seconds[warmup:]
    return {
        "samples_per_s": batch * world * len(steady) / sum(steady),
        "first_step_at": first_step_at,
        "steps": len(step_seconds),
        "world": world,
    }


def torch_steps(rank: int, world: int, batch: int, steps: int, warmup: int) -> dict[str, Any]:
    """DDP (gloo) when torch.distributed is initialised, else plain single-process."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    torch.manual_seed(0)
    X, y = _data(rank, world, batch * 8)
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    model: Any = torch.nn.Sequential(
        torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10))
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    times, first = [], time.time()
    for step in range(steps):
        start = time.perf_counter()
        i = (step * batch) % len(X)
        optimizer.zero_grad()
        loss_fn(model(X[i:i + batch]), y[i:i + batch]).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return timing(times, first, batch, world, warmup)


def tensorflow_steps(strategy: Any, rank: int, world: int, batch: int, steps: int,
                     warmup: int) -> dict[str, Any]:
    """A custom step under ``strategy`` (MultiWorkerMirrored when several workers)."""
    import tensorflow as tf

    X, y = _data(rank, world, batch * 8)
    with strategy.scope():
        model = tf.keras.Sequential([
            tf.keras.layers.Input(shape=(64,)),
            tf.keras.layers.Dense(HIDDEN, activation="relu"),
            tf.keras.layers.Dense(HIDDEN, activation="relu"),
            tf.keras.layers.Dense(10),
        ])
        optimizer = tf.keras.optimizers.SGD(0.01)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction=tf.keras.losses.Reduction.NONE)

    @tf.function
    def step(features: Any, labels: Any) -> Any:
        def replica_step(f: Any, lab: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = tf.nn.compute_average_loss(loss_fn(lab, model(f, training=True)),
                                                  global_batch_size=batch * world)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss
        return strategy.run(replica_step, args=(features, labels))

    times, first = [], time.time()
    for index in range(steps):
        start = time.perf_counter()
        i = (index * batch) % len(X)
        step(tf.constant(X[i:i + batch]), tf.constant(y[i:i + batch]))
        times.append(time.perf_counter() - start)
    return timing(times, first, batch, world, warmup)


def mxnet_steps(kvstore: Any, rank: int, world: int, batch: int, steps: int,
                warmup: int) -> dict[str, Any]:
    """Gluon with a ``dist_sync`` kvstore (ps-lite) when several workers, else local."""
    from raykube.frameworks.mxnet import patch_numpy

    patch_numpy()
    import mxnet as mx
    from mxnet import autograd, gluon

    mx.random.seed(0)
    X, y = _data(rank, world, batch * 8)
    net = gluon.nn.Sequential()
    net.add(gluon.nn.Dense(HIDDEN, activation="relu"), gluon.nn.Dense(HIDDEN, activation="relu"),
            gluon.nn.Dense(10))
    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01},
                            kvstore=kvstore or "local")
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    times, first = [], time.time()
    for index in range(steps):
        start = time.perf_counter()
        i = (index * batch) % len(X)
        data, label = mx.nd.array(X[i:i + batch]), mx.nd.array(y[i:i + batch])
        with autograd.record():
            loss = loss_fn(net(data), label)
        loss.backward()
        trainer.step(batch * world)
        loss.wait_to_read()
        times.append(time.perf_counter() - start)
    return timing(times, first, batch, world, warmup)


def single_thread_env() -> dict[str, str]:
    """One compute thread per worker under every launcher, so runs compare like for like."""
    return {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
            "TF_NUM_INTEROP_THREADS": "1", "MXNET_CPU_WORKER_NTHREADS": "1"}


def apply_single_thread_env() -> None:
    """Set :func:`single_thread_env` in this process (before the framework is imported)."""
    os.environ.update(single_thread_env())
