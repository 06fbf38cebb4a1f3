"""Tabular regression: scikit-learn's bundled diabetes data, VectorAssembler + StandardScaler +
KerasEstimator in one Pipeline.

Ten clinical measurements predict disease progression a year later (a number from 25 to 346).
The model ends in a Rescaling layer holding the training label's mean and spread, so it learns
on a unit scale and predicts (and reports rmse) in the label's own units.
Run: python examples/tabular_regression.py [--master local[2]] [--num-proc 2] [--epochs 20]
"""
from __future__ import annotations

import os

import keras
from _common import parse_args, save_and_reload, spark_session, timed_fit
from pyspark.ml import Pipeline
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.sql import functions as F
from sklearn.datasets import load_diabetes

from sparkdl import KerasEstimator, Store


def regressor(inputs: int, label_mean: float, label_std: float) -> keras.Model:
    keras.utils.set_random_seed(1)
    return keras.Sequential([
        keras.Input((inputs,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(1),
        keras.layers.Rescaling(scale=label_std, offset=label_mean),
    ])


def rmse(df, label: str, prediction: str) -> float:
    return df.select(F.sqrt(F.avg((F.col(prediction) - F.col(label)) ** 2))).first()[0]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], epochs=20)
    spark = spark_session(args.master, "sparkdl-tabular-regression")
    diabetes = load_diabetes(scaled=False)  # raw units: the StandardScaler stage scales them
    columns = list(diabetes.feature_names)
    rows = [(i, *map(float, x), float(y))
            for i, (x, y) in enumerate(zip(diabetes.data, diabetes.target, strict=True))]
    df = spark.createDataFrame(rows, ["id", *columns, "progression"])
    train, test = df.randomSplit([0.8, 0.2], seed=42)
    mean, std = train.select(F.avg("progression"), F.stddev("progression")).first()

    est = KerasEstimator(model=regressor(len(columns), mean, std),
                         optimizer=keras.optimizers.Adam(3e-3), loss="mse",
                         metrics=["mae"],
                         feature_cols=["scaled"], label_cols=["progression"],
                         store=Store.create(args.store), num_proc=args.num_proc, batch_size=16,
                         epochs=args.epochs, validation=0.1, random_seed=1)
    pipeline = Pipeline(stages=[
        VectorAssembler(inputCols=columns, outputCol="features"),
        StandardScaler(inputCol="features", outputCol="scaled", withMean=True, withStd=True),
        est,
    ])
    model = timed_fit(pipeline, train)

    predicted = model.transform(test)
    baseline = rmse(test.withColumn("mean", F.lit(mean)), "progression", "mean")
    print(f"held-out rmse: {rmse(predicted, 'progression', 'progression__output'):.4f} "
          f"on {test.count()} patients")
    print(f"baseline rmse: {baseline:.4f} (predicting the training mean)")
    save_and_reload(model, args.model_path or os.path.join(args.store, "models", "tabular"),
                    test, "progression__output")
    spark.stop()


if __name__ == "__main__":
    main()
