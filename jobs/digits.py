"""The real data every example job trains on: scikit-learn's handwritten digits.

1,797 8x8 images of the digits 0-9, shipped inside scikit-learn (no download). A fixed,
stratified 80/20 split keeps a held-out test set that no worker trains on.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

NUM_FEATURES = 64
NUM_CLASSES = 10


def load_digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X_train, y_train, X_test, y_test)``: features scaled to [0, 1], float32 / int64."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=seed, stratify=y
    )
    return X_train, y_train, X_test, y_test


def fingerprint(arrays: list[Any]) -> str:
    """A hash of a model's parameters: equal on every worker iff the replicas are identical."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(np.asarray(array, dtype=np.float32)).tobytes())
    return digest.hexdigest()[:16]
