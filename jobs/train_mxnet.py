"""Train a digit classifier with Apache MXNet (Gluon, dist_sync parameter server) on raykube.

    RAYKUBE_MXNET_PYTHON=.venv-mxnet/bin/python python jobs/train_mxnet.py --cluster local
    ray job submit --working-dir jobs -- python train_mxnet.py

MXNet workers run in their own environment (numpy < 2); raykube's MXNet backend starts the
ps-lite scheduler and server. Gradients are pushed to the server, which updates the weights
that every worker pulls, so the replicas stay identical (checked by fingerprints at the end).
"""

from __future__ import annotations

from typing import Any

from raykube import worker

from common import final_summary, run_example
from digits import NUM_CLASSES, load_digits_split


def build_net() -> Any:
    """The classifier: 64 -> 128 (ReLU) -> 10, initialised on the CPU."""
    import mxnet as mx
    from mxnet import gluon

    net = gluon.nn.Sequential()
    net.add(gluon.nn.Dense(128, activation="relu"), gluon.nn.Dense(NUM_CLASSES))
    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    return net


def train_loop(config: dict[str, Any]) -> dict[str, Any]:
    import mxnet as mx
    import numpy as np
    from mxnet import autograd, gluon

    mx.random.seed(0)
    X_train, y_train, X_test, y_test = load_digits_split()
    ctx = worker.context()
    X, y = worker.shard(X_train, y_train)
    batch = config["batch_size"]
    # dist_sync needs the same number of pushes from every worker.
    steps = (len(X_train) // ctx.world_size) // batch

    net = worker.prepare(build_net())
    start = 0
    state = worker.restore()
    if state:
        net(mx.nd.array(X[:1]))  # materialise the parameters' shapes
        for name, value in state["params"].items():
            net.collect_params()[name].set_data(mx.nd.array(value))
        start = state["epoch"] + 1
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": config["lr"]},
                            kvstore=worker.mxnet_kvstore())
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    rng = np.random.default_rng(ctx.rank)

    def accuracy() -> float:
        predicted = net(mx.nd.array(X_test)).argmax(axis=1).asnumpy()
        return float((predicted == y_test).mean())

    for epoch in range(start, config["epochs"]):
        order = rng.permutation(len(X))
        for step in range(steps):
            idx = order[step * batch:(step + 1) * batch]
            data, label = mx.nd.array(X[idx]), mx.nd.array(y[idx])
            with autograd.record():
                loss = loss_fn(net(data), label)
            loss.backward()
            trainer.step(batch * ctx.world_size)  # the server sums every worker's gradient
        params = {name: p.data().asnumpy() for name, p in net.collect_params().items()}
        worker.report(
            {"epoch": epoch, "loss": float(loss.mean().asscalar()), "test_accuracy": accuracy()},
            state={"epoch": epoch, "params": params},
        )
    weights = [p.data().asnumpy() for p in net.collect_params().values()]
    return final_summary(weights, accuracy(), start)


def main() -> None:
    run_example("mxnet", train_loop, "MXNet dist_sync parameter server on sklearn digits",
                {"lr": 0.01, "batch_size": 32})


if __name__ == "__main__":
    main()
