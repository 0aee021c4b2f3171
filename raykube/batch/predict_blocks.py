"""What runs in each actor of a batch job: the predictor over one block of rows at a time.

A row the predictor cannot take (a feature that is null, a vector of the wrong length, a value
that is not a finite number) is never passed to it: the block's other rows are predicted, and
the bad ones either fail the job with an error naming the first one's id, or are written aside
with their reason. Their file is named after the block's ids, so a block predicted again after
its actor died overwrites its own file instead of adding a second.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from raykube import frameworks
from raykube.data.columns import columns_to_numpy, feature_matrix
from raykube.errors import DataError

REASON_COLUMN = "reason"
"""The column of the bad-rows files that says why each row was set aside."""


class RowCounter:
    """Counts predicted rows for the driver's progress line, and where the actors run.

    Progress only: a block predicted again after an actor died is counted twice here, never in
    the output."""

    def __init__(self) -> None:
        self.rows = 0
        self.nodes: set[str] = set()

    def add(self, rows: int) -> None:
        self.rows += rows

    def joined(self, node: str) -> None:
        self.nodes.add(node)

    def read(self) -> tuple[int, list[str]]:
        return self.rows, sorted(self.nodes)


class PredictBlocks:
    """One actor of the pool: the predictor, loaded once, over block after block."""

    def __init__(self, predictor: str, checkpoint: str, framework: str, features: list[str],
                 id_column: str, prediction_column: str, bad_rows: str | None,
                 counter: Any) -> None:
        import ray

        self.predictor = frameworks.get(framework).load_predictor(predictor, checkpoint)
        self.input_shape = tuple(self.predictor.input_shape)
        self.width = math.prod(self.input_shape)
        self.features, self.id_column = features, id_column
        self.prediction_column, self.bad_rows, self.counter = prediction_column, bad_rows, counter
        counter.joined.remote(ray.get_runtime_context().get_node_id())

    def __call__(self, table: Any) -> Any:
        import pyarrow as pa

        reasons = self._reasons(table)
        bad = np.array([r is not None for r in reasons], dtype=bool)
        if bad.any():
            self._set_aside(table, bad, reasons)
        good = table.filter(pa.array(~bad)) if bad.any() else table
        predictions: list[Any] = []
        if good.num_rows:
            matrix = feature_matrix(columns_to_numpy(good, self.features), self.features)
            shaped = matrix.reshape((len(matrix), *self.input_shape))
            predictions = list(self.predictor.predict(shaped))
            if len(predictions) != good.num_rows:
                raise DataError(f"the predictor returned {len(predictions)} predictions for "
                                f"{good.num_rows} rows", "return one prediction per row")
        self.counter.add.remote(table.num_rows)
        return pa.table({
            self.id_column: good.column(self.id_column),
            self.prediction_column: pa.array([_plain(p) for p in predictions]),
        })

    def _reasons(self, table: Any) -> list[str | None]:
        """Per row: why the predictor cannot take it, or None."""
        import pyarrow as pa
        import pyarrow.compute as pc

        reasons: list[str | None] = [None] * table.num_rows
        widths = {}
        for name in self.features:
            if name not in table.column_names:
                raise DataError(f"no feature column {name!r} in the input",
                                f"its columns are: {', '.join(table.column_names)}")
            column = table.column(name)
            nulls = column.is_null().to_numpy(zero_copy_only=False)
            kind = column.type
            if pa.types.is_list(kind) or pa.types.is_large_list(kind) or \
                    pa.types.is_fixed_size_list(kind):
                lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(
                    zero_copy_only=False)
                widths[name] = lengths
                values = pc.list_flatten(column)
                finite = _finite(values)
                row_of = np.repeat(np.arange(table.num_rows), lengths)
                broken = np.zeros(table.num_rows, dtype=bool)
                np.logical_or.at(broken, row_of, ~finite)
            else:
                widths[name] = np.ones(table.num_rows, dtype=np.int64)
                broken = ~_finite(column) & ~nulls
            for index in np.flatnonzero(nulls | broken):
                if reasons[index] is None:
                    reasons[index] = (f"feature {name!r} is null" if nulls[index] else
                                      f"feature {name!r} holds a value that is not a finite "
                                      "number")
        total = sum(widths.values())
        for index in np.flatnonzero(total != self.width):
            if reasons[index] is None:
                reasons[index] = (f"features give {int(total[index])} values, the predictor "
                                  f"takes {self.width}")
        return reasons

    def _set_aside(self, table: Any, bad: np.ndarray, reasons: list[str | None]) -> None:
        """Fail on the first bad row, or write the block's bad rows aside."""
        import pyarrow as pa
        import pyarrow.fs
        import pyarrow.parquet as pq

        ids = table.column(self.id_column).to_pylist()
        first = int(np.flatnonzero(bad)[0])
        if self.bad_rows is None:
            raise DataError(f"row {self.id_column}={ids[first]!r}: {reasons[first]} "
                            f"({int(bad.sum())} such row(s) in its block)",
                            "fix the input, or set badRows: a folder to write such rows to")
        rows = table.filter(pa.array(bad)).append_column(
            REASON_COLUMN, pa.array([r for r in reasons if r is not None]))
        name = f"bad-{ids[0]}-{ids[-1]}-{table.num_rows}.parquet"
        filesystem, root = pyarrow.fs.FileSystem.from_uri(_as_uri(self.bad_rows))
        filesystem.create_dir(root, recursive=True)
        pq.write_table(rows, f"{root}/{name}", filesystem=filesystem)


def _finite(values: Any) -> np.ndarray:
    """Per value: a finite number (a non-numeric type counts as not finite)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_floating(values.type):
        return pc.fill_null(pc.is_finite(values), False).to_numpy(zero_copy_only=False)
    if pa.types.is_integer(values.type) or pa.types.is_boolean(values.type):
        return ~values.is_null().to_numpy(zero_copy_only=False)
    return np.zeros(len(values), dtype=bool)


def _plain(value: Any) -> Any:
    """A prediction as Arrow takes it (NumPy scalars and arrays as Python values)."""
    return value.tolist() if hasattr(value, "tolist") else value


def _as_uri(location: str) -> str:
    """A path or URI as a URI pyarrow opens."""
    return location if "://" in location else f"file://{location}"
