"""What MLflow tracking costs a fit: the same fit with log_to_mlflow=False and True (a local
sqlite tracking store), alternated, medians of --repeat runs; prints seconds and the ratio. Then
batch scoring with the tracked fit's logged model: MLflow's `spark_udf` against
`KerasModel.transform`, 200,000 rows in 64 partitions, noop writes.

`.venv/bin/python bench/bench_tracking.py [--rows 20000] [--epochs 3] [--repeat 3]`
"""
from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

from common import features_df, fit_args, make_dataset, median, mlp, timed  # noqa: E402

SCORE_ROWS, SCORE_PARTITIONS = 200_000, 64  # many tasks: a loader's per-task cost shows


def main() -> None:
    args = fit_args(__doc__)

    import keras
    import mlflow
    from pyspark.sql import SparkSession

    from sparkdl import KerasEstimator, Store

    tmp = tempfile.mkdtemp(prefix="sparkdl-bench-tracking-")
    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    # artifacts under tmp too: a sqlite store's default experiment puts them in ./mlruns
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(
        "bench-tracking", artifact_location=os.path.join(tmp, "artifacts")))
    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false") \
        .getOrCreate()
    _, parquet = make_dataset(os.path.join(tmp, "data"), args.rows, args.dim)
    df = features_df(spark, parquet)
    store = Store.create(os.path.join(tmp, "store"))

    def fit(tracked: bool) -> float:
        est = KerasEstimator(model=mlp(args.dim, [64, 64]), optimizer=keras.optimizers.Adam(1e-3),
                             loss="binary_crossentropy", feature_cols=["features"],
                             label_cols=["label"], store=store, num_proc=2, batch_size=128,
                             epochs=args.epochs, validation=0.1, verbose=0,
                             log_to_mlflow=tracked, cache_key="bench-tracking")
        return timed(lambda: est.fit(df))

    fit(False)  # materialise once and warm up
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeat):
        for tracked in (False, True):
            took, fitted = fit(tracked)
            seconds[tracked].append(took)
    plain, tracked = median(seconds[False]), median(seconds[True])
    print(f"fit, {args.rows} rows x {args.epochs} epochs, num_proc=2, median of {args.repeat}")
    print(f"  log_to_mlflow=False: {plain:.2f} s")
    print(f"  log_to_mlflow=True:  {tracked:.2f} s  (params, {args.epochs} epochs of metrics, "
          "TensorBoard logs, model)")
    print(f"  ratio tracked / untracked: {tracked / plain:.2f}")
    scoring = score(spark, fitted, tmp, args.dim, args.repeat)
    print(f"scoring {SCORE_ROWS:,} rows in {SCORE_PARTITIONS} partitions with the tracked fit's "
          f"model, noop writes, median of {args.repeat}")
    print(f"  mlflow.pyfunc.spark_udf: {scoring['spark_udf']:.2f} s")
    print(f"  KerasModel.transform:    {scoring['transform']:.2f} s")
    print(f"  ratio spark_udf / transform: {scoring['spark_udf'] / scoring['transform']:.2f}")
    spark.stop()


def score(spark: Any, fitted: Any, tmp: str, dim: int, repeat: int) -> dict[str, float]:
    """Seconds to score the same rows through the logged model's `spark_udf` and through
    `transform`, medians after a warm-up of each (Python workers started, models loaded)."""
    import mlflow
    from pyspark.ml.functions import vector_to_array

    _, parquet = make_dataset(os.path.join(tmp, "score"), SCORE_ROWS, dim, seed=2)
    df = features_df(spark, parquet, partitions=SCORE_PARTITIONS)
    udf = mlflow.pyfunc.spark_udf(spark, fitted.mlflow_model_uri, result_type="float",
                                  env_manager="local")
    frames = {"spark_udf": df.withColumn("p", udf(vector_to_array("features").alias("features"))),
              "transform": fitted.transform(df)}

    def noop(frame: Any) -> float:
        return timed(lambda: frame.write.format("noop").mode("overwrite").save())[0]

    # one after the other, not alternated: transform freezes its Python workers' heap out of
    # garbage collection, which would speed up spark_udf runs in the same workers after it
    seconds = {}
    for name, frame in frames.items():
        noop(frame)
        seconds[name] = median([noop(frame) for _ in range(repeat)])
    return seconds


if __name__ == "__main__":
    main()
