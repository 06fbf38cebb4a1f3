"""Data path: DataFrame -> Parquet in a Store (driver), Parquet shard -> tf.data (worker).

Driver side: ``sparkdl.data.materialize.materialize`` and ``sparkdl.data.schema.inspect_columns``
(need pyspark.sql). Worker side: ``sparkdl.data.reader.open_shard_dataset`` (no pyspark.sql).
This package itself only exports the metadata classes both sides share.
"""
from __future__ import annotations

from sparkdl.data.meta import ColumnSpec, DatasetMeta, SplitInfo

__all__ = ["ColumnSpec", "DatasetMeta", "SplitInfo"]
