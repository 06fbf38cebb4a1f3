"""Smoke test of a cluster: an allreduce across Horovod ranks launched by `sparkdl.run`.

    spark-submit --master spark://127.0.0.1:7177 examples/cluster_smoke.py --num-proc 2

Each rank contributes rank + 1, so `num_proc` ranks print allreduce_sum = n (n + 1) / 2. It runs
on the Keras backend of the executors (KERAS_BACKEND: TensorFlow, or torch).
Without spark-submit, `--master` picks the master (default: local[<num-proc>]).
"""
from __future__ import annotations

import argparse
import os
import sys

from pyspark.sql import SparkSession

import sparkdl


def allreduce_rank() -> float:
    import keras

    from sparkdl.train.backend import horovod

    hvd = horovod()  # Horovod's ops for the Keras backend: horovod.tensorflow or horovod.torch
    hvd.init()
    return float(hvd.allreduce(keras.ops.convert_to_tensor(float(hvd.rank() + 1)), op=hvd.Sum))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--master", help="Spark master URL; spark-submit --master sets it instead")
    parser.add_argument("--num-proc", type=int, default=2, help="Horovod ranks (default: 2)")
    opts = parser.parse_args()

    # Executors run this driver's Python unless PYSPARK_PYTHON / spark.pyspark.python say otherwise.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("sparkdl-cluster-smoke")
    if opts.master:
        builder = builder.master(opts.master)
    elif "PYSPARK_GATEWAY_PORT" not in os.environ:  # plain python, not spark-submit
        builder = builder.master(f"local[{opts.num_proc}]")
    spark = builder.getOrCreate()
    try:
        sums = sparkdl.run(allreduce_rank, num_proc=opts.num_proc)
        if len(set(sums)) != 1:
            raise SystemExit(f"ranks disagree on the allreduce: {sums}")
        print(f"allreduce_sum={sums[0]}")
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
