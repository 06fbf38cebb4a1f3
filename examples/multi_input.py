"""A multi-input model: scikit-learn's bundled 8x8 digits as pixels plus a vector of per-image
statistics, in a Pipeline of VectorAssembler + StandardScaler + KerasEstimator.

Input 1 is the 64 pixels (an array column reshaped to (8, 8, 1) for a small CNN); input 2 is a
vector of ink statistics computed with Spark SQL (total ink, ink per half, ink per quadrant),
assembled and scaled by Spark ML stages. `feature_cols` names one column per model input, in
the order of `model.inputs`.
Run: python examples/multi_input.py [--master local[2]] [--num-proc 2] [--epochs 8]
"""
from __future__ import annotations

import os

import keras
from _common import parse_args, print_class_accuracy, save_and_reload, spark_session, timed_fit
from pyspark.ml import Pipeline
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from sklearn.datasets import load_digits

from sparkdl import KerasEstimator, Store

# where each statistic takes its ink from: (row, column) -> bool, over the 8x8 image
REGIONS = {
    "ink": lambda r, c: F.lit(True),
    "ink_top": lambda r, c: r < 4,
    "ink_left": lambda r, c: c < 4,
    "ink_centre": lambda r, c: (r >= 2) & (r < 6) & (c >= 2) & (c < 6),
    "ink_top_left": lambda r, c: (r < 4) & (c < 4),
    "ink_top_right": lambda r, c: (r < 4) & (c >= 4),
    "ink_bottom_left": lambda r, c: (r >= 4) & (c < 4),
    "ink_bottom_right": lambda r, c: (r >= 4) & (c >= 4),
}


def ink_in(pixels: Column, region) -> Column:
    """Mean pixel value over the pixels of `region` (pixel i sits at row i // 8, column i % 8)."""
    kept = F.filter(pixels, lambda p, i: region(F.floor(i / 8), i % 8))
    return F.aggregate(kept, F.lit(0.0), lambda acc, p: acc + p) / F.size(kept)


def with_stats(df: DataFrame) -> DataFrame:
    return df.select("*", *[ink_in(F.col("pixels"), region).alias(name)
                            for name, region in REGIONS.items()])


def two_input_model(stats: int) -> keras.Model:
    keras.utils.set_random_seed(1)
    pixels = keras.Input((8, 8, 1), name="pixels")
    x = keras.layers.Conv2D(16, 3, activation="relu", padding="same")(pixels)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    x = keras.layers.Flatten()(x)
    summary = keras.Input((stats,), name="stats")
    s = keras.layers.Dense(16, activation="relu")(summary)
    joined = keras.layers.Concatenate()([x, s])
    hidden = keras.layers.Dense(64, activation="relu")(joined)
    out = keras.layers.Dense(10, activation="softmax", name="digit")(hidden)
    return keras.Model([pixels, summary], out)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], epochs=8)
    spark = spark_session(args.master, "sparkdl-multi-input")
    digits = load_digits()
    rows = [(i, [float(p) / 16.0 for p in x], int(y))
            for i, (x, y) in enumerate(zip(digits.data, digits.target, strict=True))]
    df = with_stats(spark.createDataFrame(rows, "id long, pixels array<double>, digit int"))
    train, test = df.randomSplit([0.8, 0.2], seed=42)

    est = KerasEstimator(model=two_input_model(len(REGIONS)),
                         optimizer=keras.optimizers.Adam(2e-3),
                         loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                         feature_cols=["pixels", "stats"], label_cols=["digit"],
                         store=Store.create(args.store), num_proc=args.num_proc, batch_size=32,
                         epochs=args.epochs, validation=0.1, random_seed=1)
    pipeline = Pipeline(stages=[
        VectorAssembler(inputCols=list(REGIONS), outputCol="raw_stats"),
        StandardScaler(inputCol="raw_stats", outputCol="stats", withMean=True, withStd=True),
        est,
    ])
    model = timed_fit(pipeline, train)

    print_class_accuracy(model.transform(test), "digit", "digit__output", "digits")
    save_and_reload(model, args.model_path or os.path.join(args.store, "models", "multi_input"),
                    test, "digit__output")
    spark.stop()


if __name__ == "__main__":
    main()
