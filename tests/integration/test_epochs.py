"""What an epoch is on 2 ranks: every training row once, and validation metrics of all rows."""
from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_helpers import CountRows, SaveSeenRows, job_descriptions, make_estimator
from pyspark.sql import functions as F


def test_every_training_row_is_trained_on_exactly_once_per_epoch(spark, store_root, tmp_path):
    rows = 1025  # shards of 512 and 513 rows: 16 steps of 32, the last batch 32 and 33 rows
    df = spark.range(rows).select(
        F.array(F.col("id").cast("double"), F.rand(1)).alias("features"),
        F.rand(2).alias("y"))
    model = keras.Sequential([keras.Input((2,)), CountRows(rows), keras.layers.Dense(1)])
    fitted = make_estimator(store_root, model=model, optimizer=keras.optimizers.SGD(1e-3),
                            loss="mse", label_cols=["y"], batch_size=32, epochs=2, random_seed=3,
                            callbacks=[SaveSeenRows(str(tmp_path))]).fit(df)
    # the fit's jobs are named in the Spark UI
    assert {f"sparkdl fit {fitted.getRunId()}: materialise",
            f"sparkdl fit {fitted.getRunId()}: train on 2 ranks"} <= set(job_descriptions(spark))

    seen = [np.load(tmp_path / f"seen{rank}.npy") for rank in (0, 1)]
    np.testing.assert_array_equal(seen[0] + seen[1], np.full(rows, 2.0))  # 2 epochs
    assert sorted(s.sum() for s in seen) == [2 * 512, 2 * 513]  # balanced by rows


def test_validation_metrics_are_those_of_every_validation_row_once(spark, store_root):
    rows = 1200
    rng = np.random.default_rng(4)
    x = rng.normal(size=(rows, 3))
    y = x @ np.array([1.0, -1.0, 0.5]) + 0.1 * rng.normal(size=rows)
    is_val = np.zeros(rows, dtype=int)
    is_val[rng.choice(rows, 203, replace=False)] = 1  # shards of 101 and 102 rows
    df = spark.createDataFrame(
        [(x[i].tolist(), float(y[i]), int(is_val[i])) for i in range(rows)],
        "features array<double>, y double, is_val int")
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1)])
    fitted = make_estimator(store_root, model=model, optimizer=keras.optimizers.Adam(1e-2),
                            loss="mse", metrics=["mae"], label_cols=["y"], validation="is_val",
                            batch_size=32, val_batch_size=16, epochs=2,
                            random_seed=5).fit(df)

    history = fitted.getHistory()
    val = is_val == 1
    expected = fitted.getModel().evaluate(x[val].astype("float32"), y[val].astype("float32"),
                                          batch_size=203, return_dict=True, verbose=0)
    assert history["val_loss"][-1] == pytest.approx(expected["loss"], rel=1e-5)
    assert history["val_mae"][-1] == pytest.approx(expected["mae"], rel=1e-5)
