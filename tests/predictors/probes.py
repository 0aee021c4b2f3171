"""Predictors that let tests steer a replica: slow work (autoscaling) and a failing health check.

Uploaded as the workingDir of the services the serving tests deploy. Their "checkpoint" is a
plain file path the test controls.
"""

from __future__ import annotations

import os
import time

import numpy as np


class Slow:
    """Sums each row, taking ``seconds`` (the file's content) per batch: load that keeps a
    replica busy, so Serve's autoscaler sees ongoing requests pile up."""

    input_shape = (4,)

    def __init__(self, checkpoint: str) -> None:
        with open(checkpoint) as handle:
            self.seconds = float(handle.read())

    def predict(self, batch: np.ndarray) -> list[float]:
        time.sleep(self.seconds)  # stands for model compute
        return batch.sum(axis=1).tolist()


class Flaky:
    """Sums each row; fails its health check once the file at ``checkpoint`` names its pid."""

    input_shape = (4,)

    def __init__(self, checkpoint: str) -> None:
        self.marker = checkpoint

    def predict(self, batch: np.ndarray) -> list[float]:
        return batch.sum(axis=1).tolist()

    def check_health(self) -> None:
        with open(self.marker) as handle:
            if handle.read().strip() == str(os.getpid()):
                raise RuntimeError(f"replica {os.getpid()} told to fail its health check")


class Broken:
    """Cannot load: a version whose replicas fail to start."""

    input_shape = (4,)

    def __init__(self, checkpoint: str) -> None:
        raise FileNotFoundError(f"no model weights in {checkpoint}")


class Poison:
    """Sums each row; a row starting with 666 kills the replica answering it, after writing
    the replica's pid as a line of the file at ``checkpoint`` (so a test counts the deaths)."""

    input_shape = (4,)

    def __init__(self, checkpoint: str) -> None:
        self.deaths = checkpoint

    def predict(self, batch: np.ndarray) -> list[float]:
        if (batch[:, 0] == 666).any():
            with open(self.deaths, "a") as handle:
                handle.write(f"{os.getpid()}\n")
            os._exit(1)
        return batch.sum(axis=1).tolist()


class NeverReady:
    """Never finishes starting (as a replica loading a huge model): a deploy of it stays
    DEPLOYING until it is interrupted or times out."""

    input_shape = (4,)

    def __init__(self, checkpoint: str) -> None:
        deadline = time.monotonic() + 600
        while not os.path.exists(checkpoint + ".ready") and time.monotonic() < deadline:
            time.sleep(0.5)  # stands for a model that loads for minutes

    def predict(self, batch: np.ndarray) -> list[float]:
        return batch.sum(axis=1).tolist()
