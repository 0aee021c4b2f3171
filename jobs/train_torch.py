"""Train a digit classifier with PyTorch DDP on a raykube cluster.

    python jobs/train_torch.py --cluster local             # from a shell next to the cluster
    ray job submit --working-dir jobs -- python train_torch.py    # as a Ray job

Each worker trains on its shard of the training set; DDP averages gradients, so the replicas
stay identical (checked at the end by comparing parameter fingerprints across workers).
"""

from __future__ import annotations

import time
from typing import Any

from raykube import worker

from common import final_summary, run_example
from digits import NUM_CLASSES, NUM_FEATURES, load_digits_split


def build_model() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(NUM_FEATURES, 128), torch.nn.ReLU(), torch.nn.Linear(128, NUM_CLASSES)
    )


def train_loop(config: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    X_train, y_train, X_test, y_test = load_digits_split()
    device = worker.device()  # the worker's GPU where it has a real one, else the CPU
    X, y = worker.shard(torch.from_numpy(X_train).to(device), torch.from_numpy(y_train).to(device))
    model = worker.prepare(build_model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    loss_fn = torch.nn.CrossEntropyLoss()
    start = 0
    state = worker.restore()
    if state:  # resumed after a failure, or a run started again under the same name
        model_of(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"] + 1
    generator = torch.Generator().manual_seed(worker.context().rank)
    for epoch in range(start, config["epochs"]):
        model.train()
        order = torch.randperm(len(X), generator=generator).to(device)
        for i in range(0, len(X), config["batch_size"]):
            batch = order[i : i + config["batch_size"]]
            optimizer.zero_grad()
            loss = loss_fn(model(X[batch]), y[batch])
            loss.backward()
            optimizer.step()
        accuracy = evaluate(model, X_test, y_test)
        worker.report(
            {"epoch": epoch, "loss": loss.item(), "test_accuracy": accuracy},
            state={
                "epoch": epoch,
                # on the CPU, so a server without a GPU can load it
                "model": {k: v.cpu() for k, v in model_of(model).state_dict().items()},
                "optimizer": optimizer.state_dict(),
            },
        )
        if config.get("epoch_delay_s"):
            time.sleep(config["epoch_delay_s"])  # lets tests interrupt a run mid-way
    weights = [p.detach().cpu().numpy() for p in model.parameters()]
    return final_summary(weights, evaluate(model, X_test, y_test), start)


def model_of(model: Any) -> Any:
    """The plain model inside a DDP wrapper."""
    return getattr(model, "module", model)


def evaluate(model: Any, X_test: Any, y_test: Any) -> float:
    import torch

    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        predicted = model(torch.from_numpy(X_test).to(device)).argmax(dim=1).cpu().numpy()
    return float((predicted == y_test).mean())


def main() -> None:
    run_example("torch", train_loop, "PyTorch DDP on sklearn digits",
                {"lr": 0.01, "batch_size": 32})


if __name__ == "__main__":
    main()
