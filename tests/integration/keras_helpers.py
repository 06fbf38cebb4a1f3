"""Small data sets and models shared by the Keras estimator tests."""
from __future__ import annotations

import contextlib
import uuid

import numpy as np
import tensorflow as tf
from pyspark.sql import functions as F


def separable_df(spark, rows=2000, seed=0):
    """Columns a, b, c, d (double) and label = (a - 2b + 0.5c > 0), plus an id."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) > 0).astype(float)
    data = [(i, *map(float, r), float(t)) for i, (r, t) in enumerate(zip(x, y, strict=True))]
    return spark.createDataFrame(data, ["id", "a", "b", "c", "d", "label"])


def mlp(inputs=4, hidden=16, activation="sigmoid"):
    tf.keras.utils.set_random_seed(1)
    return tf.keras.Sequential([tf.keras.Input((inputs,)),
                                tf.keras.layers.Dense(hidden, activation="relu"),
                                tf.keras.layers.Dense(1, activation=activation)])


def accuracy(df, label="label", output="label__output"):
    hit = ((F.col(output) > 0.5).cast("double") == F.col(label)).cast("double")
    return df.select(F.avg(hit)).first()[0]


@contextlib.contextmanager
def no_spark_job(spark):
    """Assert that the block starts no Spark job (the block runs in this thread's job group)."""
    sc = spark.sparkContext
    group = f"no-job-{uuid.uuid4().hex[:8]}"
    sc.setJobGroup(group, "must start no job")
    try:
        yield
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        assert list(sc.statusTracker().getJobIdsForGroup(group)) == []
