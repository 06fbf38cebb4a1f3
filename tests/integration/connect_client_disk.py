"""Run by test_keras_estimator.py as a Spark Connect client whose disk is not the server's (a
tmpfs over the test's directory, in a mount namespace of its own): saves a KerasModel at a path
where the server already holds one, first without overwrite, then with it."""
from __future__ import annotations

import argparse

import keras
import numpy as np
from pyspark.sql import SparkSession

from sparkdl import KerasModel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--remote", required=True)
    parser.add_argument("--path", required=True)
    args = parser.parse_args()
    spark = SparkSession.builder.remote(args.remote).getOrCreate()
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    model.set_weights([np.full((1, 1), 3.0, np.float32)])
    stage = KerasModel.from_keras(model, ["x"], ["y"])
    try:
        stage.write().save(args.path)
        print("RESULT saved over it", flush=True)
    except FileExistsError:
        print("RESULT exists", flush=True)
    stage.write().overwrite().save(args.path)
    print("RESULT overwritten", flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
