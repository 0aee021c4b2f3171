"""A block of rows (an Arrow table) as NumPy columns, and the feature matrix a model takes.

Parquet keeps a vector per row (an image's pixels, an embedding) as a list column; Ray Data hands
such a column to NumPy as an array of arrays, which no framework takes. Here it becomes one
2-D array, read from Arrow's buffer in one step rather than row by row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from raykube.errors import DataError


def column_to_numpy(column: Any, name: str) -> np.ndarray:
    """One Arrow column as a NumPy array: scalars 1-D, a list column 2-D (rows x values).

    Raises:
        DataError: a list column whose rows differ in length, or hold nulls.
    """
    import pyarrow as pa

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = array.type
    if pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind):
        if array.null_count:
            raise DataError(f"column {name!r} has {array.null_count} null row(s)",
                            "drop or fill them before training or predicting")
        lengths = array.value_lengths().to_numpy(zero_copy_only=False) if not \
            pa.types.is_fixed_size_list(kind) else None
        width = kind.list_size if lengths is None else (int(lengths[0]) if len(lengths) else 0)
        if lengths is not None and len(lengths) and (lengths != width).any():
            raise DataError(f"column {name!r} holds lists of different lengths "
                            f"({int(lengths.min())} to {int(lengths.max())})",
                            "give every row the same number of values")
        values = array.flatten().to_numpy(zero_copy_only=False)
        result = values.reshape(len(array), width)
    else:
        result = array.to_numpy(zero_copy_only=False)
    # Arrow's buffers are read-only; frameworks (torch.from_numpy) want to own writable memory.
    return result if result.flags.writeable else result.copy()


def columns_to_numpy(table: Any, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """``columns`` of an Arrow table (all when None) as NumPy arrays by name.

    Raises:
        DataError: a column is not there (naming the ones that are).
    """
    names = list(columns) if columns is not None else list(table.column_names)
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise DataError(f"no column {', '.join(map(repr, missing))} in the data set",
                        f"its columns are: {', '.join(table.column_names)}")
    return {name: column_to_numpy(table.column(name), name) for name in names}


def feature_matrix(arrays: dict[str, np.ndarray], features: Sequence[str]) -> np.ndarray:
    """The float32 matrix (rows x features) of ``features``, side by side in the order given."""
    parts = [arrays[name].reshape(len(arrays[name]), -1) for name in features]
    return np.concatenate(parts, axis=1).astype(np.float32, copy=False)
