"""Text classification: review text in a string column, tokenised by the model itself.

The reviews are generated here (no download): a few sentences about a product, whose sentiment
words say whether the reviewer liked it; one review in twenty carries the wrong label. The model
starts with a TextVectorization layer adapted on a sample of the training text, so the saved
PipelineModel takes raw strings: no tokeniser or vocabulary to keep in step on the Spark side.
Run: python examples/text_classification.py [--master local[2]] [--num-proc 2] [--epochs 4]
"""
from __future__ import annotations

import os

import keras
import numpy as np
from _common import parse_args, save_and_reload, spark_session, timed_fit
from pyspark.ml import Pipeline
from pyspark.sql import functions as F

from sparkdl import KerasEstimator, Store

PRODUCTS = ["blender", "kettle", "headset", "lamp", "backpack", "charger", "desk", "toaster"]
LIKED = ["works perfectly", "is excellent value", "exceeded my expectations", "feels sturdy",
         "arrived quickly and works", "is exactly as described", "I love it", "five stars"]
DISLIKED = ["stopped working", "is a waste of money", "broke after a week", "feels flimsy",
            "arrived damaged", "is nothing like the photos", "I want a refund", "one star"]
NEUTRAL = ["I bought this {p} last month.", "The {p} came in a plain box.",
           "My sister has the same {p}.", "Setting up the {p} took ten minutes.",
           "I use the {p} every day.", "Got the {p} on sale."]
VOCABULARY = 2000
WORDS = 24  # tokens per review the model looks at


def reviews(n: int, seed: int) -> list[tuple[int, str, float]]:
    """(id, review text, label): 1.0 for a liked product, 0.0 otherwise; 5% mislabelled."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        liked = bool(rng.integers(2))
        product = rng.choice(PRODUCTS)
        sentences = [s.format(p=product) for s in rng.choice(NEUTRAL, 2, replace=False)]
        verdict = rng.choice(LIKED if liked else DISLIKED)
        sentences.insert(int(rng.integers(3)), f"The {product} {verdict}.")
        label = float(liked) if rng.random() > 0.05 else float(not liked)
        rows.append((i, " ".join(sentences), label))
    return rows


def classifier(sample: np.ndarray) -> keras.Model:
    """Raw text in, the probability that the reviewer liked the product out."""
    keras.utils.set_random_seed(1)
    text = keras.Input(shape=(), dtype="string", name="review")
    vectorize = keras.layers.TextVectorization(max_tokens=VOCABULARY,
                                               output_sequence_length=WORDS)
    vectorize.adapt(sample)  # the vocabulary is part of the model, saved with it
    x = keras.layers.Embedding(VOCABULARY, 16)(vectorize(text))
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    return keras.Model(text, keras.layers.Dense(1, activation="sigmoid")(x))


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], epochs=4)
    spark = spark_session(args.master, "sparkdl-text-classification")
    df = spark.createDataFrame(reviews(6000, seed=7), "id long, review string, liked double")
    train, test = df.randomSplit([0.8, 0.2], seed=42)
    sample = np.array([r.review for r in train.select("review").limit(2000).collect()])

    est = KerasEstimator(model=classifier(sample), optimizer=keras.optimizers.Adam(1e-2),
                         loss="binary_crossentropy", metrics=["accuracy"],
                         feature_cols=["review"], label_cols=["liked"],
                         store=Store.create(args.store), num_proc=args.num_proc, batch_size=64,
                         epochs=args.epochs, validation=0.1, random_seed=1)
    model = timed_fit(Pipeline(stages=[est]), train)

    predicted = model.transform(test)
    hit = ((F.col("liked__output") > 0.5).cast("double") == F.col("liked")).cast("double")
    print(f"held-out accuracy: {predicted.select(F.avg(hit)).first()[0]:.4f} on "
          f"{test.count()} reviews (labels are 95% right: that is the ceiling)")
    save_and_reload(model, args.model_path or os.path.join(args.store, "models", "text"),
                    test, "liked__output")
    spark.stop()


if __name__ == "__main__":
    main()
