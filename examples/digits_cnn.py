"""Image-like data: scikit-learn's bundled 8x8 digits, a small CNN, a Pipeline with KerasEstimator.

The 64 pixels arrive as an array column and are reshaped to the model's (8, 8, 1) input.
Run: python examples/digits_cnn.py [--master local[2]] [--num-proc 2] [--epochs 8]
"""
from __future__ import annotations

import os

import keras
from _common import parse_args, print_class_accuracy, save_and_reload, spark_session, timed_fit
from pyspark.ml import Pipeline
from sklearn.datasets import load_digits

from sparkdl import KerasEstimator, Store


def cnn() -> keras.Model:
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], epochs=8)
    spark = spark_session(args.master, "sparkdl-digits-cnn")
    digits = load_digits()
    rows = [(i, [float(p) / 16.0 for p in x], int(y))
            for i, (x, y) in enumerate(zip(digits.data, digits.target, strict=True))]
    df = spark.createDataFrame(rows, "id long, pixels array<double>, digit int")
    train, test = df.randomSplit([0.8, 0.2], seed=42)

    est = KerasEstimator(model=cnn(), optimizer=keras.optimizers.Adam(2e-3),
                         loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                         feature_cols=["pixels"], label_cols=["digit"],
                         store=Store.create(args.store), num_proc=args.num_proc, batch_size=32,
                         epochs=args.epochs, validation=0.1, random_seed=1)
    model = timed_fit(Pipeline(stages=[est]), train)

    print_class_accuracy(model.transform(test), "digit", "digit__output", "digits")
    save_and_reload(model, args.model_path or os.path.join(args.store, "models", "digits_cnn"),
                    test, "digit__output")
    spark.stop()


if __name__ == "__main__":
    main()
