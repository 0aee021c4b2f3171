"""A data set bigger than memory, derived from scikit-learn's digits, written as Parquet.

Each row is one of the 1,797 real 8x8 digit images, shifted by up to one pixel, scaled in
intensity and given a little noise: as many distinct rows as asked for, from real data and
without a download. Training rows come from the training split's images only, test rows from
the held-out images only (:func:`digits.load_digits_split`), so accuracy on the test files is
accuracy on digits the model never saw.

Columns: ``id`` (int64, unique across the data set), ``pixels`` (64 float32 in [0, 1]) and
``label`` (int64). Files of :data:`ROWS_PER_FILE` rows let Ray Data stream them a block at a
time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digits import NUM_FEATURES, load_digits_split

ROWS_PER_FILE = 40_000
"""About 11 MB in memory per file: many blocks, each far below one node's object store."""

TEST_ID_OFFSET = 10**12
"""Test rows' ids start here, so a training id and a test id never meet."""


def jittered(images: np.ndarray, labels: np.ndarray, rows: int, seed: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` altered copies of ``images`` (n x 64) and their labels."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(images), rows)
    grid = images[pick].reshape(rows, 8, 8)
    shifted = np.zeros_like(grid)
    dy, dx = rng.integers(-1, 2, rows), rng.integers(-1, 2, rows)
    for sy in (-1, 0, 1):
        for sx in (-1, 0, 1):
            chosen = (dy == sy) & (dx == sx)
            moved = np.roll(grid[chosen], (sy, sx), axis=(1, 2))
            if sy:
                moved[:, 0 if sy > 0 else -1, :] = 0
            if sx:
                moved[:, :, 0 if sx > 0 else -1] = 0
            shifted[chosen] = moved
    scale = rng.uniform(0.8, 1.2, (rows, 1, 1)).astype(np.float32)
    noise = rng.normal(0, 0.05, shifted.shape).astype(np.float32)
    pixels = np.clip(shifted * scale + noise, 0.0, 1.0).astype(np.float32)
    return pixels.reshape(rows, NUM_FEATURES), labels[pick]


def write_digits_parquet(folder: str | Path, train_rows: int, test_rows: int,
                         seed: int = 0) -> dict[str, str]:
    """Write ``train/`` and ``test/`` Parquet folders under ``folder``; return their paths.

    Written a file at a time, so writing never holds more than one file's rows in memory.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    X_train, y_train, X_test, y_test = load_digits_split()
    paths = {}
    for split, images, labels, rows, first_id in (
        ("train", X_train, y_train, train_rows, 0),
        ("test", X_test, y_test, test_rows, TEST_ID_OFFSET),
    ):
        out = Path(folder) / split
        out.mkdir(parents=True, exist_ok=True)
        for index, start in enumerate(range(0, rows, ROWS_PER_FILE)):
            count = min(ROWS_PER_FILE, rows - start)
            pixels, picked = jittered(images, labels, count, seed * 1_000_003 + index
                                      + (0 if split == "train" else 500_000))
            table = pa.table({
                "id": pa.array(np.arange(first_id + start, first_id + start + count)),
                "pixels": pa.FixedSizeListArray.from_arrays(pa.array(pixels.ravel()),
                                                            NUM_FEATURES),
                "label": pa.array(picked),
            })
            pq.write_table(table, out / f"part-{index:05d}.parquet")
        paths[split] = str(out)
    return paths
