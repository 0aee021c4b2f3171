"""A training worker's share of a streamed data set: ``worker.dataset("train")``.

Ray Train splits each data set of the run across its workers as it is read (a streaming
split: every worker gets the same number of rows, so collective steps stay in step). A pass
over :meth:`DatasetShard.batches` is one epoch: it reads the data again, in a new order where
the data set shuffles its files, while a shuffle buffer mixes rows within what it holds. Batches
come as a dict of columns in the run's framework form: torch tensors on the worker's device,
TensorFlow tensors, or NumPy arrays (MXNet takes them with ``mx.nd.array``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from raykube.data.columns import columns_to_numpy, feature_matrix
from raykube.frameworks.base import Framework

DEFAULT_BATCH_SIZE = 256


class DatasetShard:
    """This worker's part of one data set of the run.

    Attributes:
        name: the data set's name in ``raykube.train(datasets=...)``.
        iterator: Ray's ``DataIterator`` under it, for what this class does not cover.
    """

    def __init__(self, name: str, iterator: Any, framework: Framework) -> None:
        self.name = name
        self.iterator = iterator
        self._framework = framework

    def batches(self, batch_size: int = DEFAULT_BATCH_SIZE, *,
                columns: Sequence[str] | None = None, shuffle_buffer: int | None = None,
                drop_last: bool = False, prefetch: int = 1) -> Iterator[dict[str, Any]]:
        """One pass (an epoch) over this worker's rows, ``batch_size`` at a time.

        Args:
            batch_size: rows per batch (the last one may be smaller unless ``drop_last``).
            columns: the columns to keep (all when None); a list column (a vector per row)
                comes as one 2-D array.
            shuffle_buffer: rows held to draw each batch from at random (None: file order).
            drop_last: leave out a last batch smaller than ``batch_size``.
            prefetch: batches read ahead while the model computes.
        """
        for table in self.iterator.iter_batches(
            batch_size=batch_size, batch_format="pyarrow", drop_last=drop_last,
            local_shuffle_buffer_size=shuffle_buffer, prefetch_batches=prefetch,
        ):
            yield self._framework.tensors(columns_to_numpy(table, columns))

    def tf_dataset(self, features: Sequence[str], label: str,
                   batch_size: int = DEFAULT_BATCH_SIZE, *, shuffle_buffer: int | None = None
                   ) -> Any:
        """A ``tf.data.Dataset`` of ``(features, label)`` batches for Keras' ``fit``: the
        features side by side as one float32 matrix, every batch full (the last partial one is
        left out, so every worker runs the same number of steps). Each pass over it reads an
        epoch. It is this worker's share already, so TensorFlow's own sharding is off."""
        def generate() -> Iterator[tuple[Any, Any]]:
            for table in self.iterator.iter_batches(
                batch_size=batch_size, batch_format="pyarrow", drop_last=True,
                local_shuffle_buffer_size=shuffle_buffer,
            ):
                arrays = columns_to_numpy(table, [*features, label])
                yield feature_matrix(arrays, features), arrays[label]

        schema = self.iterator.schema()
        width = sum(_width(schema, name) for name in features)
        label_type = schema.base_schema.field(label).type.to_pandas_dtype()
        return self._framework.keras_dataset(generate, width, label_type)


def _width(schema: Any, name: str) -> int:
    """How many features column ``name`` gives each row: its list size, or 1 for a scalar."""
    import pyarrow as pa

    kind = schema.base_schema.field(name).type
    return int(kind.list_size) if pa.types.is_fixed_size_list(kind) else 1
