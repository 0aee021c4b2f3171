"""Data at scale with Ray Data: data sets read lazily from files, streamed to training workers
and through batch inference a block at a time, so no process holds a whole data set.

- :func:`read` makes a Ray Dataset of a local folder, a file, or a URI (Parquet, CSV or NumPy),
  checking what it can before the cluster is touched.
- :class:`DatasetShard` is what a training worker gets from ``worker.dataset(name)``: its share
  of a data set, in batches of the run's framework form.
- :func:`columns_to_numpy` turns a block into NumPy columns (a fixed-size list column, such as
  an image's pixels, becomes one 2-D array), the form both of those work in.
"""

from __future__ import annotations

from raykube.data.columns import columns_to_numpy, feature_matrix
from raykube.data.shard import DatasetShard
from raykube.data.sources import FORMATS, DataSource, read

__all__ = ["FORMATS", "DataSource", "DatasetShard", "columns_to_numpy", "feature_matrix", "read"]
