"""String columns into a model's string inputs: text through TextVectorization, categories and
token arrays through StringLookup, trained on 2 ranks, transformed, saved and loaded; strings
that do not fit the model fail before any job."""
from __future__ import annotations

import re

import keras
import numpy as np
import pytest
from keras_helpers import accuracy, no_spark_job, strings_refused
from pyspark.ml import Pipeline, PipelineModel
from pyspark.sql import functions as F

from sparkdl import KerasEstimator, KerasModel, Store
from sparkdl.data.materialize import materialize
from sparkdl.data.meta import STRING_OBJECT_BYTES
from sparkdl.data.reader import SHUFFLE_BUFFER_BYTES, open_dataset, window_rows

GOOD = ["great", "love", "excellent", "fine", "happy", "works"]
BAD = ["awful", "hate", "poor", "broken", "sad", "refund"]
FILLER = ["the", "product", "it", "was", "very", "and", "this", "item", "arrived", "my"]
COUNTRIES = ["de", "fr", "us", "jp"]


@pytest.fixture(scope="module")
def reviews(spark):
    """Review text whose words carry the label, a country code, three tags (array<string>) and
    a number: every kind of string input and a numeric one."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(1200):
        label = int(rng.integers(2))
        words = list(rng.choice(FILLER, 6)) + list(rng.choice(GOOD if label else BAD, 2))
        rng.shuffle(words)
        tags = [str(t) for t in rng.choice(["new", "used", "gift", "sale"], 3)]
        rows.append((i, " ".join(words), str(rng.choice(COUNTRIES)), tags,
                     float(rng.normal()), float(label)))
    return spark.createDataFrame(
        rows, "id long, text string, country string, tags array<string>, x double, label double"
    ).cache()


def _model():
    """Text, country, tags and x in; the probability of a good review out."""
    keras.utils.set_random_seed(5)
    text = keras.Input(shape=(), dtype="string", name="text")
    country = keras.Input(shape=(1,), dtype="string", name="country")
    tags = keras.Input(shape=(3,), dtype="string", name="tags")
    x = keras.Input(shape=(1,), name="x")
    vectorize = keras.layers.TextVectorization(max_tokens=64, output_sequence_length=10)
    vectorize.adapt(np.array([" ".join(GOOD + BAD + FILLER)]))  # a user adapts on a sample
    words = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(64, 8)(vectorize(text)))
    codes = keras.layers.StringLookup(vocabulary=COUNTRIES, output_mode="one_hot")(country)
    tagged = keras.layers.StringLookup(vocabulary=["new", "used", "gift", "sale"],
                                       output_mode="multi_hot")(tags)
    merged = keras.layers.Concatenate()([words, keras.layers.Flatten()(codes), tagged, x])
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dense(16, "relu")(merged))
    return keras.Model([text, country, tags, x], out)


def _vocabulary(model):
    vectorize = next(layer for layer in model.layers
                     if isinstance(layer, keras.layers.TextVectorization))
    return vectorize.get_vocabulary()[:20]


def _estimator(store_root, model=None, **overrides):
    params = dict(model=model or _model(), optimizer=keras.optimizers.Adam(1e-2),
                  loss="binary_crossentropy", feature_cols=["text", "country", "tags", "x"],
                  label_cols=["label"], store=Store.create(store_root), num_proc=2,
                  batch_size=32, epochs=4, random_seed=3, verbose=0)
    return KerasEstimator(**{**params, **overrides})


@pytest.mark.tensorflow
def test_string_columns_train_transform_save_and_load(spark, reviews, store_root, tmp_path):
    train, test = reviews.randomSplit([0.8, 0.2], seed=1)
    est = _estimator(store_root, validation=0.2)
    est.save(str(tmp_path / "est"))  # the adapted vocabulary travels with the model
    loaded_est = KerasEstimator.load(str(tmp_path / "est"))
    assert [t.dtype for t in loaded_est.getModel().inputs] == ["string"] * 3 + ["float32"]
    assert _vocabulary(loaded_est.getModel()) == _vocabulary(est.getModel()) != []
    pm = Pipeline(stages=[est]).fit(train)
    history = pm.stages[0].getHistory()
    assert len(history["val_loss"]) == 4 and history["val_loss"][-1] < history["val_loss"][0]

    predicted = pm.transform(test)
    assert predicted.schema["label__output"].dataType.simpleString() == "float"
    assert accuracy(predicted) > 0.9  # the words carry the label: chance is 0.5

    pm.write().save(str(tmp_path / "pm"))
    loaded = PipelineModel.load(str(tmp_path / "pm"))
    before = predicted.orderBy("id").select("label__output").toPandas()["label__output"]
    after = (loaded.transform(test).orderBy("id").select("label__output").toPandas()
             ["label__output"])
    np.testing.assert_array_equal(before.to_numpy(), after.to_numpy())

    # the model the driver holds predicts raw strings as transform did
    rows = test.orderBy("id").limit(5).toPandas()
    inputs = [rows["text"].to_numpy(str), rows["country"].to_numpy(str)[:, None],
              np.stack(rows["tags"].to_numpy()).astype(str), rows["x"].to_numpy("float32")[:, None]]
    import tensorflow as tf  # the string inputs' backend

    direct = pm.stages[0].getModel()([tf.constant(a) for a in inputs], training=False)
    np.testing.assert_allclose(np.asarray(direct)[:, 0], before.to_numpy()[:5], rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("features, model, message", [
    pytest.param(["text"], lambda: _numeric_model(),
                 "feature column 'text' holds strings but model input 'numbers' takes float32",
                 id="string-column-numeric-input"),
    pytest.param(["x"], lambda: _text_model(),
                 "model input 'words' takes strings but feature column 'x' holds numbers",
                 id="numeric-column-string-input", marks=pytest.mark.tensorflow),
])
def test_a_string_column_and_a_numeric_input_fail_before_any_job(spark, reviews, store_root,
                                                                  features, model, message):
    message = strings_refused(features[0], message)
    est = _estimator(store_root, model=model(), feature_cols=features)
    with no_spark_job(spark), pytest.raises(ValueError, match=re.escape(message)):
        est.fit(reviews)
    fitted = KerasModel.from_keras(model(), feature_cols=features, output_cols=["p"])
    with no_spark_job(spark), pytest.raises(ValueError, match=re.escape(message)):
        fitted.transform(reviews)


def _numeric_model():
    inp = keras.Input(shape=(1,), name="numbers")
    return keras.Model(inp, keras.layers.Dense(1)(inp))


def _text_model():
    inp = keras.Input(shape=(), dtype="string", name="words")
    vectorize = keras.layers.TextVectorization(max_tokens=8, output_sequence_length=2)
    vectorize.adapt(np.array(["a b"]))
    return keras.Model(inp, keras.layers.Dense(1)(keras.ops.cast(vectorize(inp), "float32")))


@pytest.mark.tensorflow
def test_a_string_label_fails_before_any_job(spark, reviews, store_root):
    est = _estimator(store_root, label_cols=["country"])
    with no_spark_job(spark), pytest.raises(ValueError, match=re.escape(
            "column 'country' has type string; expected a numeric or boolean scalar")):
        est.fit(reviews)


@pytest.mark.tensorflow
def test_null_strings_fail_in_the_profiling_job_naming_the_column(spark, reviews, store_root):
    nulls = reviews.withColumn("text", F.when(F.col("id") % 100 == 0, None)
                               .otherwise(F.col("text")))
    with pytest.raises(ValueError, match=re.escape(
            "feature column 'text' has 12 null value(s) in 1200 rows; expected none")):
        _estimator(store_root).fit(nulls)
    holed = F.array(F.lit("new"), F.lit(None), F.lit("gift"))
    tag_nulls = reviews.withColumn("tags", F.when(F.col("id") == 7, holed)
                                   .otherwise(F.col("tags")))
    with pytest.raises(ValueError, match=re.escape(
            "feature column 'tags' has null array elements in 1 row(s)")):
        _estimator(store_root).fit(tag_nulls)


@pytest.mark.tensorflow
def test_long_strings_keep_the_shuffle_window_in_bytes_and_read_back_whole(spark, store_root):
    """Strings of 256 KiB and of a few bytes: the window is sized by their mean size, not by
    a number's width, and every string reads back as written."""
    rows = [(i, f"{i:05d}" * (52_429 if i % 2 else 1), float(i)) for i in range(128)]
    df = spark.createDataFrame(rows, "id long, text string, y double")
    meta = materialize(df, Store.create(store_root), ["text"], ["y"], num_proc=1)
    spec = meta.columns["text"]
    mean = sum(len(t) for _, t, _ in rows) / len(rows)
    assert spec.dtype == "string" and spec.value_bytes == int(np.ceil(mean))
    window = window_rows([spec, meta.columns["y"]], batch_size=4)
    assert window * (mean + STRING_OBJECT_BYTES) <= SHUFFLE_BUFFER_BYTES < 2 * window * mean
    read = {}
    for texts, ys in open_dataset(meta.store.dataset_url(meta.train_path), 16, meta=meta):
        read.update(zip(ys.numpy().astype(int).tolist(),
                        [t.decode() for t in texts.numpy().tolist()], strict=True))
    assert read == {i: text for i, text, _ in rows}
