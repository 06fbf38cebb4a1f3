"""The benchmark peer: horovod.spark.keras.KerasEstimator on the P3/P4/P5 tasks of run_all.py.

Runs in `.venv-peer` (bench/peer_venv.sh: pyarrow 10.0.1, which horovod's data preparation needs)
with its own local Spark session, after the sparkdl stages, on the same Parquet data and the same
initial models. Prints one JSON line; a task that fails reports its error instead of figures.

  .venv-peer/bin/python bench/peer_task.py SPEC.json
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from typing import Any

from common import COMPILE, LEARNING_RATE, PhaseTimes, features_df, mlp, read_phase_times


def main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(spec["master"]).appName("bench_peer")
             .config("spark.ui.enabled", "false").config("spark.driver.memory", "4g")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    out: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for name, task in spec["fits"].items():
        out[name] = _guard(lambda task=task, name=name: _fit(spark, task, models, name))
    task = spec["transform"]
    out["transform"] = _guard(lambda: _transform(spark, task, models.get(task["model_from"])))
    spark.stop()
    print(json.dumps(out), flush=True)


def _guard(fn: Any) -> dict[str, Any]:
    try:
        return fn()
    except Exception as exc:  # reported in the table instead of a figure
        last = traceback.format_exc().strip().splitlines()[-1]
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300], "last": last}


def _fit(spark: Any, task: dict[str, Any], models: dict[str, Any], name: str) -> dict[str, Any]:
    import horovod.spark.keras as hvd_keras
    import tensorflow as tf
    from horovod.spark.common.store import LocalStore

    df = features_df(spark, task["parquet"])
    model = mlp(task["dim"], task["hidden"])  # Keras 2's own initial weights for the seed
    with tempfile.TemporaryDirectory(prefix="bench_peer_") as tmp:
        timing = os.path.join(tmp, "timing")
        est = hvd_keras.KerasEstimator(
            num_proc=task["num_proc"], model=model, store=LocalStore(os.path.join(tmp, "store")),
            optimizer=tf.keras.optimizers.Adam(LEARNING_RATE), loss=COMPILE["loss"],
            metrics=COMPILE["metrics"], feature_cols=["features"], label_cols=["label"],
            batch_size=task["batch_size"], epochs=task["epochs"], verbose=0, use_gpu=False,
            callbacks=[PhaseTimes(timing)], random_seed=1)
        start = time.time()
        models[name] = est.fit(df)
        end = time.time()
        ranks = read_phase_times(timing)
    df.unpersist()
    return {"start": start, "end": end, "ranks": {str(k): v for k, v in ranks.items()},
            **{k: task[k] for k in ("num_proc", "epochs", "batch_size")}}


def _transform(spark: Any, task: dict[str, Any], model: Any) -> dict[str, Any]:
    if model is None:
        return {"error": "no trained peer model (its fit failed)"}
    df = features_df(spark, task["parquet"], task["rows"])
    seconds = []
    for _ in range(task["repeat"]):
        start = time.perf_counter()
        model.transform(df).write.format("noop").mode("overwrite").save()
        seconds.append(time.perf_counter() - start)
    return {"rows": task["rows"], "seconds": seconds}


if __name__ == "__main__":
    main(sys.argv[1])
