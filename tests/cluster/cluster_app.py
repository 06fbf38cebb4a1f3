"""spark-submitted once by the `cluster_app` fixture, with task GPUs on workers whose discovery
scripts report fake addresses (one application instead of two: a driver, executors and their
TensorFlow imports less). Prints what the tests check, a `RESULT <part> <json>` line per part:

- test_cluster_gpus.py: what each rank of `sparkdl.run` and of a fit sees, transform, the slot
  check, and examples/cluster_smoke.py's allreduce across the two executors;
- test_cluster_recovery.py: a 5-epoch fit whose rank 1 kills its own executor JVM as epoch 2
  begins (once), and how it went on.
"""
from __future__ import annotations

import argparse
import json
import os
import runpy
import signal
from pathlib import Path

import keras
import numpy as np
import psutil
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

import sparkdl
from sparkdl import KerasEstimator, Store

# run_path, not import: its functions then travel to the executors by value, as from the example
SMOKE = runpy.run_path(str(Path(__file__).resolve().parents[2] / "examples" / "cluster_smoke.py"))


def _seen() -> dict[str, str | None]:
    """What a rank sees: its GPUs, memory growth, and the executor dir it runs in (its worker)."""
    return {"gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "growth": os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH"), "cwd": os.getcwd()}


class RecordGpus(keras.callbacks.Callback):
    """Writes what each rank sees to `<dir>/rank<N>.json` when training begins."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = directory

    def on_train_begin(self, logs=None):
        from sparkdl.train.backend import horovod

        with open(os.path.join(self.directory, f"rank{horovod().rank()}.json"), "w") as f:
            json.dump(_seen(), f)


class KillExecutorOnce(keras.callbacks.Callback):
    """On rank 1, as epoch `epoch` begins the first time: SIGKILL the executor JVM above it."""

    def __init__(self, epoch: int, marker: str) -> None:
        super().__init__()
        self.epoch, self.marker = epoch, marker

    def on_epoch_begin(self, epoch, logs=None):
        from sparkdl.train.backend import horovod

        if epoch + 1 != self.epoch or horovod().rank() != 1 or os.path.exists(self.marker):
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
    spark = SparkSession.builder.appName("sparkdl-cluster-app").getOrCreate()
    # a line per part as it ends, so that one part's failure leaves the other's result
    print("RESULT gpus " + json.dumps(gpus(spark, os.path.join(args.store, "gpus"))), flush=True)
    recovery = executor_loss(spark, os.path.join(args.store, "recovery"))
    print("RESULT recovery " + json.dumps(recovery), flush=True)
    spark.stop()


def gpus(spark: SparkSession, store: str) -> dict:
    """What the ranks of `sparkdl.run` and of a fit see, and what transform and the checks do."""
    result: dict = {"run": sparkdl.run(_seen, num_proc=2),
                    "run_cpu": sparkdl.run(_seen, num_proc=2, use_gpu=False),
                    "allreduce": sparkdl.run(SMOKE["allreduce_rank"], num_proc=2)}
    try:
        sparkdl.run(_seen, num_proc=3)
    except ValueError as exc:
        result["too_many"] = str(exc)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4))
    df = spark.createDataFrame([(x[i].tolist(), float(x[i].sum())) for i in range(400)],
                               "features array<double>, y double")
    seen_dir = os.path.join(store, "seen")
    os.makedirs(seen_dir, exist_ok=True)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    fitted = KerasEstimator(model=model, optimizer=keras.optimizers.Adam(1e-2), loss="mse",
                            feature_cols=["features"], label_cols=["y"], epochs=1,
                            store=Store.create(store), num_proc=2, batch_size=32,
                            callbacks=[RecordGpus(seen_dir)]).fit(df)
    result["fit"] = [json.load(open(os.path.join(seen_dir, f"rank{r}.json"))) for r in (0, 1)]
    result["predicted"] = fitted.transform(df).where("y__output is not null").count()
    return result


def executor_loss(spark: SparkSession, store: str) -> dict:
    """A 5-epoch fit on two executors whose rank 1 kills its executor as epoch 2 begins."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 8))
    y = x @ rng.normal(size=8) + 0.1 * rng.normal(size=3000)
    df = spark.createDataFrame([(x[i].tolist(), float(y[i])) for i in range(3000)],
                               "features array<double>, y double")
    train, test = (split.cache() for split in df.randomSplit([0.8, 0.2], seed=1))
    marker = os.path.join(store, "executor-killed")
    os.makedirs(store, exist_ok=True)
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    lost = KerasEstimator(model=model, optimizer=keras.optimizers.Adam(1e-2), loss="mse",
                          feature_cols=["features"], label_cols=["y"],
                          store=Store.create(store), num_proc=2, batch_size=32, epochs=5,
                          random_seed=7, run_id="executor-lost",
                          callbacks=[KillExecutorOnce(2, marker)]).fit(train)
    err = lost.transform(test).select(F.avg((F.col("y__output") - F.col("y")) ** 2))
    return {"killed": os.path.exists(marker), "history": lost.getHistory()["epoch"],
            "run_history": lost.getRunHistory()["epoch"], "mse": err.first()[0]}


if __name__ == "__main__":
    main()
