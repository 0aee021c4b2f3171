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


class Classifier:
    """A 10-class classifier whose faults a test sets: the class of a row is ``int(row[0]) %
    10``; the JSON at ``checkpoint`` says what share of requests fail (``fail``), how long each
    batch takes (``delay_s``) and what share of answers are the wrong class (``wrong``).

    Faults are spread evenly, not drawn at random: with ``fail: 0.2`` every fifth batch fails,
    so any stretch of n batches holds n/5 failures, give or take one, and a judge that counts
    them decides the same way on every run."""

    input_shape = (4,)

    def __init__(self, checkpoint: str) -> None:
        import json

        with open(checkpoint) as handle:
            faults = json.load(handle)
        self.fail = float(faults.get("fail", 0))
        self.delay_s = float(faults.get("delay_s", 0))
        self.wrong = float(faults.get("wrong", 0))
        self.batches = 0
        self.rows = 0

    @staticmethod
    def _due(count: int, share: float) -> bool:
        """Whether the count-th event is one of the evenly spread ``share`` of all events."""
        return int(count * share) != int((count - 1) * share)

    def predict(self, batch: np.ndarray) -> list[int]:
        if self.delay_s:
            time.sleep(self.delay_s)  # stands for a slower model
        self.batches += 1
        if self._due(self.batches, self.fail):
            raise RuntimeError("this version fails on purpose")
        answers = []
        for row in batch:
            self.rows += 1
            answers.append((int(row[0]) + (1 if self._due(self.rows, self.wrong) else 0)) % 10)
        return answers
