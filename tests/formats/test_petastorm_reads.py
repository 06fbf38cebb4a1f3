"""The on-disk contract: petastorm's own reader opens what sparkdl materialises, every row with
the same values."""
from __future__ import annotations

import numpy as np
from petastorm import make_batch_reader
from pyspark.ml.functions import array_to_vector
from pyspark.sql import functions as F

from sparkdl.data.materialize import materialize
from sparkdl.store import Store


def test_petastorm_make_batch_reader_reads_every_materialized_row(spark, tmp_path):
    store = Store.create(str(tmp_path / "store"))
    frame = spark.range(500).select(
        array_to_vector(F.array(F.col("id").cast("double"), F.lit(0.5))).alias("vec"),
        F.array(F.col("id").cast("int"), F.lit(7)).alias("arr"),
        F.col("id"), (F.col("id") % 2).cast("boolean").alias("odd"))
    meta = materialize(frame, store, ["vec", "arr", "odd"], "id", validation=0.2, num_proc=2)
    for split in (meta.train, meta.val):
        # petastorm's thread pool (its default) can end a read early: 87 short reads in 300
        with make_batch_reader(store.dataset_url(split.path), num_epochs=1,
                               reader_pool_type="dummy",
                               storage_options=store.storage_options or None) as reader:
            batches = list(reader)
        ids = np.concatenate([b.id for b in batches])
        assert len(ids) == split.rows and len(set(ids)) == split.rows
        vec = np.concatenate([np.stack(b.vec) for b in batches])
        arr = np.concatenate([np.stack(b.arr) for b in batches])
        odd = np.concatenate([b.odd for b in batches])
        np.testing.assert_array_equal(vec, np.stack([ids, np.full(len(ids), 0.5)], axis=1))
        assert vec.dtype == np.float32  # materialize's float_dtype
        np.testing.assert_array_equal(arr, np.stack([ids, np.full(len(ids), 7)], axis=1))
        np.testing.assert_array_equal(odd, ids % 2 == 1)
    assert meta.train.rows + meta.val.rows == 500
