"""What every example shares: command-line options, the SparkSession, save-and-reload."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession


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
    elif "spark.master" not in SparkSession.builder._options and not os.environ.get(
            "SPARK_SUBMIT_ARGS") and "pyspark-shell" not in os.environ.get("PYSPARK_SUBMIT_ARGS",
                                                                            ""):
        builder = builder.master("local[2]")
    spark = builder.config("spark.ui.showConsoleProgress", "false").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def save_and_reload(model: PipelineModel, path: str, test: DataFrame, column: str) -> None:
    """Save the fitted pipeline, load it back, and check it predicts the same."""
    model.write().overwrite().save(path)
    reloaded = PipelineModel.load(path)
    first = model.transform(test.limit(5)).select(column).collect()
    again = reloaded.transform(test.limit(5)).select(column).collect()
    assert first == again, "reloaded pipeline predicts differently"
    print(f"saved the PipelineModel to {path}; reloaded it and got the same predictions")
