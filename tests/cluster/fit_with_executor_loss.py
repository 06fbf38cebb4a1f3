"""spark-submitted by test_cluster_recovery.py: a 5-epoch fit on two executors whose rank 1 kills
its own executor JVM as epoch 2 begins (once); prints what the test checks."""
from __future__ import annotations

import argparse
import json
import os
import signal

import keras
import numpy as np
import psutil
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from sparkdl import KerasEstimator, Store


class KillExecutorOnce(keras.callbacks.Callback):
    """On rank 1, as epoch `epoch` begins the first time: SIGKILL the executor JVM above it."""

    def __init__(self, epoch: int, marker: str) -> None:
        super().__init__()
        self.epoch, self.marker = epoch, marker

    def on_epoch_begin(self, epoch, logs=None):
        import horovod.tensorflow as hvd

        if epoch + 1 != self.epoch or hvd.rank() != 1 or os.path.exists(self.marker):
            return
        open(self.marker, "w").close()
        for proc in psutil.Process().parents():
            if "CoarseGrainedExecutorBackend" in " ".join(proc.cmdline()):
                print(f"killing executor JVM {proc.pid}", flush=True)
                proc.send_signal(signal.SIGKILL)
                return
        raise RuntimeError("no executor JVM above this rank")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    args = parser.parse_args()
    spark = SparkSession.builder.appName("sparkdl-executor-loss").getOrCreate()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 8))
    y = x @ rng.normal(size=8) + 0.1 * rng.normal(size=3000)
    df = spark.createDataFrame([(x[i].tolist(), float(y[i])) for i in range(3000)],
                               "features array<double>, y double")
    train, test = df.randomSplit([0.8, 0.2], seed=1)
    train, test = train.cache(), test.cache()

    def fit(run_id: str, callbacks: list) -> tuple:
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(1)])
        est = KerasEstimator(model=model, optimizer=keras.optimizers.Adam(1e-2), loss="mse",
                             feature_cols=["features"], label_cols=["y"],
                             store=Store.create(args.store), num_proc=2, batch_size=32,
                             epochs=5, random_seed=7, run_id=run_id, callbacks=callbacks)
        fitted = est.fit(train)
        err = fitted.transform(test).select(F.avg((F.col("y__output") - F.col("y")) ** 2))
        return fitted, err.first()[0]

    marker = os.path.join(args.store, "executor-killed")
    lost, lost_mse = fit("executor-lost", [KillExecutorOnce(2, marker)])
    print("RESULT " + json.dumps({
        "killed": os.path.exists(marker), "history": lost.getHistory()["epoch"],
        "run_history": lost.getRunHistory()["epoch"], "mse": lost_mse}), flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
