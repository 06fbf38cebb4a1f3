"""MNIST with a CNN on Horovod ranks: horovod's examples/spark/keras/keras_spark_mnist.py (v0.28.1)
moved to sparkdl by the steps of docs/migration.md ("Step N" below).

Run: python examples/keras_spark_mnist.py [--master local[2]] [--num-proc 2] [--epochs 12]
The LIBSVM MNIST file is downloaded into --data-dir unless mnist.bz2 is there already.
"""
from __future__ import annotations

import argparse
import os
import urllib.request

import keras  # Step 1: Keras 3 and sparkdl instead of tensorflow.keras and horovod.spark
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.feature import OneHotEncoder
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from sparkdl import KerasEstimator, Store

DATA_URL = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/mnist.bz2"

parser = argparse.ArgumentParser(description="Keras Spark MNIST Example",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
parser.add_argument("--master", help="spark master to connect to")
parser.add_argument("--num-proc", type=int,
                    help="number of Horovod ranks for training (default: the task slots)")
parser.add_argument("--batch-size", type=int, default=128, help="input batch size per rank")
parser.add_argument("--epochs", type=int, default=12, help="number of epochs to train")
parser.add_argument("--work-dir", default="/tmp",
                    help="the Store: local path, hdfs://, s3://, dbfs:/ ...")
parser.add_argument("--data-dir", default="/tmp",
                    help="where mnist.bz2 is, or is downloaded to")


def main() -> None:
    args = parser.parse_args()

    builder = (SparkSession.builder.appName("keras_spark_mnist")
               .config("spark.sql.shuffle.partitions", "16"))
    if args.master:
        builder = builder.master(args.master)
    elif args.num_proc:
        builder = builder.master(f"local[{args.num_proc}]")
    spark = builder.getOrCreate()
    store = Store.create(args.work_dir)

    libsvm_path = os.path.join(args.data_dir, "mnist.bz2")
    if not os.path.exists(libsvm_path):
        urllib.request.urlretrieve(DATA_URL, libsvm_path)

    # the data preparation is plain Spark ML and stays as it was
    df = spark.read.format("libsvm").option("numFeatures", "784").load(libsvm_path)
    encoder = OneHotEncoder(inputCols=["label"], outputCols=["label_vec"], dropLast=False)
    train_df = encoder.fit(df).transform(df)
    train_df, test_df = train_df.randomSplit([0.9, 0.1])

    # Step 2: no CUDA_VISIBLE_DEVICES on the driver (ranks use the GPUs Spark gives their tasks)
    # Step 3: the model in Keras 3
    model = keras.Sequential([
        keras.Input((28, 28, 1)),  # the 784-value vectors are reshaped to it
        keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        keras.layers.Conv2D(64, (3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Dropout(0.25),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])
    optimizer = keras.optimizers.Adadelta(1.0)
    loss = keras.losses.categorical_crossentropy

    # Step 4: num_proc instead of a backend; no inmemory_cache_all and no TensorBoard callback
    # (every run writes TensorBoard logs to <work-dir>/runs/<run_id>/logs)
    keras_estimator = KerasEstimator(num_proc=args.num_proc,
                                     store=store,
                                     model=model,
                                     optimizer=optimizer,
                                     loss=loss,
                                     metrics=["accuracy"],
                                     feature_cols=["features"],
                                     label_cols=["label_vec"],
                                     batch_size=args.batch_size,
                                     epochs=args.epochs,
                                     random_seed=1,
                                     verbose=1)

    keras_model = keras_estimator.fit(train_df).setOutputCols(["label_prob"])

    # Step 5: label_prob is an array<float> of 10 probabilities; its arg max in Spark SQL
    pred_df = keras_model.transform(test_df)
    pred_df = pred_df.withColumn(
        "label_pred",
        F.expr("array_position(label_prob, array_max(label_prob)) - 1").cast("double"))
    evaluator = MulticlassClassificationEvaluator(predictionCol="label_pred", labelCol="label",
                                                  metricName="accuracy")
    print("Test accuracy:", evaluator.evaluate(pred_df))

    spark.stop()


if __name__ == "__main__":
    main()
