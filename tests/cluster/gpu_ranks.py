"""spark-submitted by test_cluster_gpus.py with task GPUs on workers whose discovery scripts report
fake addresses: what each rank of `sparkdl.run` and of a fit sees, transform, the slot check, and
examples/cluster_smoke.py's allreduce across the two executors; prints what the test checks."""
from __future__ import annotations

import argparse
import json
import os
import runpy
from pathlib import Path

import keras
import numpy as np
from pyspark.sql import SparkSession

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    args = parser.parse_args()
    spark = SparkSession.builder.appName("sparkdl-gpus").getOrCreate()
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
    seen_dir = os.path.join(args.store, "seen")
    os.makedirs(seen_dir, exist_ok=True)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    fitted = KerasEstimator(model=model, optimizer=keras.optimizers.Adam(1e-2), loss="mse",
                            feature_cols=["features"], label_cols=["y"], epochs=1,
                            store=Store.create(args.store), num_proc=2, batch_size=32,
                            callbacks=[RecordGpus(seen_dir)]).fit(df)
    result["fit"] = [json.load(open(os.path.join(seen_dir, f"rank{r}.json"))) for r in (0, 1)]
    result["predicted"] = fitted.transform(df).where("y__output is not null").count()
    print("RESULT " + json.dumps(result), flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
