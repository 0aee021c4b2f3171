"""Predictors for the digit classifiers the example jobs train: one per framework.

Each loads the state a training run reported (``raykube.worker.load_state``) into the same
model the training script builds, and returns class labels. ``jobs/digits.serve.yaml`` names
one of them as its ``predictor``; Serve replicas import this file from the uploaded workingDir.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raykube.worker import load_state

from digits import NUM_FEATURES

INPUT_SHAPE = (NUM_FEATURES,)


class TorchDigits:
    """The PyTorch MLP of ``train_torch.py``."""

    input_shape = INPUT_SHAPE

    def __init__(self, checkpoint: str) -> None:
        import torch

        from train_torch import build_model

        torch.set_num_threads(1)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = build_model()
        self.model.load_state_dict(load_state(checkpoint)["model"])
        self.model.to(self.device).eval()

    def predict(self, batch: np.ndarray) -> list[int]:
        import torch

        with torch.no_grad():
            logits = self.model(torch.from_numpy(batch).to(self.device))
            return logits.argmax(dim=1).cpu().tolist()


class TensorFlowDigits:
    """The Keras MLP of ``train_tensorflow.py``."""

    input_shape = INPUT_SHAPE

    def __init__(self, checkpoint: str) -> None:
        from train_tensorflow import build_model

        self.model = build_model()
        self.model.set_weights(load_state(checkpoint)["weights"])

    def predict(self, batch: np.ndarray) -> list[int]:
        return np.argmax(self.model(batch, training=False).numpy(), axis=1).tolist()


class MXNetDigits:
    """The Gluon MLP of ``train_mxnet.py`` (runs in the MXNet environment)."""

    input_shape = INPUT_SHAPE

    def __init__(self, checkpoint: str) -> None:
        import mxnet as mx

        from train_mxnet import build_net

        self.net = build_net()
        self.net(mx.nd.zeros((1, NUM_FEATURES)))  # materialise the parameters' shapes
        saved = list(load_state(checkpoint)["params"].values())
        for param, value in zip(self.net.collect_params().values(), saved, strict=True):
            param.set_data(mx.nd.array(value))

    def predict(self, batch: np.ndarray) -> list[int]:
        import mxnet as mx

        return self.net(mx.nd.array(batch)).argmax(axis=1).asnumpy().astype(int).tolist()


def predict_locally(predictor: type[Any], checkpoint: str, batch: np.ndarray) -> list[int]:
    """The model's own predictions, outside Serve: what a service must answer."""
    return list(predictor(checkpoint).predict(batch))
