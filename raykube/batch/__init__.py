"""Batch inference with Ray Data: a predictor mapped over a data set a block at a time by an
autoscaling pool of actors, one prediction written per input row (:func:`batch_predict`)."""

from __future__ import annotations

from raykube.batch.run import BatchResult, batch_predict

__all__ = ["BatchResult", "batch_predict"]
