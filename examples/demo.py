"""Placeholder demo: an allreduce across 2 Horovod ranks launched by sparkdl.run in local[2]."""
from __future__ import annotations

from pyspark.sql import SparkSession

import sparkdl


def allreduce_rank() -> tuple[int, float]:
    import horovod.tensorflow as hvd
    import tensorflow as tf

    hvd.init()
    return hvd.rank(), float(hvd.allreduce(tf.constant(float(hvd.rank() + 1)), op=hvd.Sum))


if __name__ == "__main__":
    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    for rank, total in sparkdl.run(allreduce_rank, num_proc=2):
        print(f"rank {rank}: allreduce sum of (rank + 1) over 2 ranks = {total}")
    spark.stop()
