"""P5 inference: KerasModel.transform rows/s vs single-process model.predict x cores, and vs
pyspark's `predict_batch_udf` on the same model, rows and batch size.

    .venv/bin/python bench/bench_infer.py --rows 51200 204800 1000000   # P5 at several sizes
    .venv/bin/python bench/bench_infer.py --rows 204800 --partitions 200  # many small tasks
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

from common import (
    WARM_UP_RUNS,
    PeakMemory,
    Row,
    features_df,
    format_table,
    local_task,
    make_dataset,
    median,
    mlp,
    runs,
)


def p5_inference(df: Any, npz: str, keras_model: Any, *, repeat: int, rows: int) -> Row:
    """transform, forced with a noop write (every row's prediction is computed), after
    WARM_UP_RUNS (the first starts the Python workers and loads the model); the limit is
    model.predict in one process with one intra-op thread (as each Spark task gets), times the
    cores, after its own warm-up."""
    cores = os.cpu_count() or 1
    batch_size = keras_model.getBatchSize()

    def transform() -> float:
        start = time.perf_counter()
        keras_model.transform(df).write.format("noop").mode("overwrite").save()
        return time.perf_counter() - start

    cold = transform()
    for _ in range(WARM_UP_RUNS - 1):
        transform()
    with PeakMemory() as mem:
        seconds = [transform() for _ in range(repeat)]
    with tempfile.TemporaryDirectory(prefix="bench_p5_") as tmp:
        path = os.path.join(tmp, "model.keras")
        keras_model.getModel().save(path)
        out = local_task("predict", npz, path, "--batch-size", str(batch_size), "--intra", "1",
                         "--inter", "1", "--repeat", str(repeat))
    if "error" in out:
        raise RuntimeError(out["error"])
    ours, one = rows / median(seconds), out["rows"] / out["seconds"]
    return Row("P5 inference (transform, noop write)", ours=f"{ours:,.0f} rows/s",
               limit=f"{one * cores:,.0f} rows/s ({one:,.0f} x {cores} cores)",
               ratio=ours / (one * cores), target=">= 0.8", note=(
                   f"{rows:,} rows, batch {batch_size}; first (cold) transform {cold:.1f} s; "
                   f"runs {runs(seconds)} s vs predict {runs(out['runs'])} s; peak MiB: python "
                   f"worker {mem.peaks.get('python worker', 0):,.0f}, JVM "
                   f"{mem.peaks.get('jvm', 0):,.0f}"),
               data={"seconds": seconds, "predict": out})


def p5_predict_batch_udf(df: Any, keras_model: Any, *, repeat: int, rows: int) -> Row:
    """`predict_batch_udf` as its documentation writes it (the model loaded once per Python
    worker, `model.predict` per batch) against transform, both forced with a noop write after a
    warm-up, alternating runs."""
    from pyspark.ml.functions import predict_batch_udf, vector_to_array
    from pyspark.sql import types as T

    from sparkdl.estimators.transform import inference_batch_size

    batch_size = inference_batch_size(keras_model.getBatchSize())
    with tempfile.TemporaryDirectory(prefix="bench_p5_udf_") as tmp:
        path = os.path.join(tmp, "model.keras")
        keras_model.getModel().save(path)
        dim = keras_model.getModel().input_shape[-1]

        def make_predict_fn() -> Any:
            import keras

            model = keras.saving.load_model(path, compile=False)

            def predict(inputs: Any) -> Any:
                return model.predict(inputs, batch_size=batch_size, verbose=0)

            return predict

        udf = predict_batch_udf(make_predict_fn, return_type=T.FloatType(),
                                batch_size=batch_size, input_tensor_shapes=[[dim]])
        peer = df.withColumn("label__output", udf(vector_to_array("features", "float32")))

        def timed_write(frame: Any) -> float:
            start = time.perf_counter()
            frame.write.format("noop").mode("overwrite").save()
            return time.perf_counter() - start

        ours_df = keras_model.transform(df)
        timed_write(peer), timed_write(ours_df)  # warm-up: workers started, models loaded
        seconds: dict[str, list[float]] = {"ours": [], "udf": []}
        for _ in range(repeat):
            seconds["udf"].append(timed_write(peer))
            seconds["ours"].append(timed_write(ours_df))
    ours, udf_rate = rows / median(seconds["ours"]), rows / median(seconds["udf"])
    return Row(f"P5 transform / predict_batch_udf ({rows:,} rows)", ours=f"{ours:,.0f} rows/s",
               limit=f"{udf_rate:,.0f} rows/s", ratio=ours / udf_rate, target=">= 1.0",
               note=(f"batch {batch_size}; runs {runs(seconds['ours'])} s vs udf "
                     f"{runs(seconds['udf'])} s"), data=seconds)


def main() -> None:
    """P5 and the predict_batch_udf comparison at each of --rows, one fitted model."""
    import keras
    from pyspark.sql import SparkSession

    from sparkdl import KerasEstimator, Store

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[51_200, 204_800, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=None,
                        help="input partitions (default: 2 per core; a shuffle's default is 200)")
    args = parser.parse_args()
    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.driver.memory", "6g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    table = []
    with tempfile.TemporaryDirectory(prefix="bench_p5_sizes_") as tmp:
        fitted = None
        for rows in args.rows:
            npz, parquet = make_dataset(os.path.join(tmp, str(rows)), rows, 64)
            df = features_df(spark, parquet, partitions=args.partitions)
            if fitted is None:  # one epoch of the P4 model: inference speed needs no accuracy
                fitted = KerasEstimator(
                    model=mlp(64, [512, 512]), optimizer=keras.optimizers.Adam(1e-3),
                    loss="binary_crossentropy", feature_cols=["features"], label_cols=["label"],
                    store=Store.create(os.path.join(tmp, "store")), num_proc=1, batch_size=256,
                    epochs=1, verbose=0).fit(df)
            table.append(p5_inference(df, npz, fitted, repeat=args.repeat, rows=rows))
            table.append(p5_predict_batch_udf(df, fitted, repeat=args.repeat, rows=rows))
            df.unpersist()
    spark.stop()
    print(format_table(table))


if __name__ == "__main__":
    main()
