"""What every example shares: command-line options, the SparkSession, save-and-reload."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from pyspark.ml import Pipeline, PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F


def parse_args(description: str, epochs: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--master", default=None,
                        help="Spark master (default: spark-submit's, else local[2])")
    parser.add_argument("--num-proc", type=int, default=2, help="Horovod ranks")
    parser.add_argument("--store", default=os.path.join(tempfile.gettempdir(), "sparkdl-examples"),
                        help="Store URL: local path, file://, hdfs://, s3://, dbfs:/ ...")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--model-path", default=None,
                        help="where to save the PipelineModel (default: under the store)")
    return parser.parse_args()


def spark_session(master: str | None, app: str) -> SparkSession:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app)
    if master:
        builder = builder.master(master)
    elif not _master_given_elsewhere():
        builder = builder.master("local[2]")
    spark = builder.config("spark.ui.showConsoleProgress", "false").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _master_given_elsewhere() -> bool:
    """True under spark-submit (its JVM, which holds --master, hands the driver a gateway) or
    when PYSPARK_SUBMIT_ARGS may name one: a master set on the builder would override theirs."""
    return ("PYSPARK_GATEWAY_PORT" in os.environ
            or "spark.master" in SparkSession.builder._options
            or "pyspark-shell" in os.environ.get("PYSPARK_SUBMIT_ARGS", ""))


def save_and_reload(model: PipelineModel, path: str, test: DataFrame, column: str) -> None:
    """Save the fitted pipeline, load it back, and check it predicts the same."""
    model.write().overwrite().save(path)
    reloaded = PipelineModel.load(path)
    # Fixed rows: on a cluster, `test.limit(5)` may pick other rows or another order each time.
    rows = test.sparkSession.createDataFrame(test.limit(5).collect(), test.schema)
    first = [r[0] for r in model.transform(rows).select(column).collect()]
    again = [r[0] for r in reloaded.transform(rows).select(column).collect()]
    assert first == again, f"reloaded pipeline predicts differently: {first} != {again}"
    print(f"saved the PipelineModel to {path}; reloaded it and got the same predictions")


def timed_fit(pipeline: Pipeline, train: DataFrame) -> PipelineModel:
    t0 = time.monotonic()
    model = pipeline.fit(train)
    print(f"fit took {time.monotonic() - t0:.1f}s")
    return model


def print_class_accuracy(predicted: DataFrame, label: str, output: str, what: str) -> None:
    """Held-out accuracy of a softmax output column (array of class probabilities)."""
    hit = F.expr(f"array_position({output}, array_max({output})) - 1") == F.col(label)
    accuracy = predicted.select(F.avg(hit.cast("double"))).first()[0]
    print(f"held-out accuracy: {accuracy:.4f} on {predicted.count()} {what}")
