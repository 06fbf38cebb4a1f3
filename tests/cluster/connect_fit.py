"""Run by test_cluster_connect.py as a plain Python client (no Spark of its own): through a Spark
Connect server in front of the standalone cluster, a Pipeline fit and transform, and a num_proc
the cluster cannot run; prints what the test checks. (Save and load through Connect:
tests/integration/test_keras_estimator.py.)"""
from __future__ import annotations

import argparse
import json
import time

import keras
import numpy as np
from pyspark.ml import Pipeline
from pyspark.ml.feature import VectorAssembler
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from sparkdl import KerasEstimator, Store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--remote", required=True)
    parser.add_argument("--store", required=True)
    args = parser.parse_args()
    spark = SparkSession.builder.remote(args.remote).getOrCreate()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4))
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) > 0).astype(float)
    df = spark.createDataFrame([(i, *map(float, x[i]), float(y[i])) for i in range(2000)],
                               ["id", "a", "b", "c", "d", "label"])
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    est = KerasEstimator(model=model, optimizer=keras.optimizers.Adam(1e-2),
                         loss="binary_crossentropy", feature_cols=["features"],
                         label_cols=["label"], store=Store.create(args.store), num_proc=2,
                         batch_size=64, epochs=4, verbose=1)
    pipeline = Pipeline(stages=[VectorAssembler(inputCols=["a", "b", "c", "d"],
                                                outputCol="features"), est])
    t0 = time.monotonic()
    fitted = pipeline.fit(df)
    fit_s = time.monotonic() - t0
    hit = ((F.col("label__output") > 0.5).cast("double") == F.col("label")).cast("double")
    out = fitted.transform(df)
    accuracy = out.select(F.avg(hit)).first()[0]
    t0 = time.monotonic()
    try:
        est.setNumProc(3).fit(fitted.stages[0].transform(df))
        error = ""
    except ValueError as exc:
        error = str(exc)
    print("RESULT " + json.dumps({
        "fit_s": fit_s, "epochs": fitted.stages[-1].getHistory()["epoch"],
        "accuracy": accuracy, "error": error,
        "error_s": time.monotonic() - t0, "master": spark.conf.get("spark.master")}), flush=True)


if __name__ == "__main__":
    main()
