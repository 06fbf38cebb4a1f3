"""KerasEstimator / KerasModel on real Spark local[2] with 2 Horovod ranks over Gloo."""
from __future__ import annotations

import importlib.util
import os
import pathlib
import re

import keras
import numpy as np
import pytest
from keras_helpers import (
    NAME_HOLDS_STRINGS,
    EvaluateEachEpoch,
    Parity,
    accuracy,
    assembled_df,
    logged_epochs,
    make_estimator,
    mlp,
    no_spark_job,
    separable_df,
)
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.functions import array_to_vector
from pyspark.sql import functions as F

from sparkdl import KerasEstimator, KerasModel, Store


@pytest.fixture(scope="module")
def data(spark):
    df = separable_df(spark)
    train, test = df.randomSplit([0.8, 0.2], seed=3)
    return train.cache(), test.cache()


def _estimator(store_root, **overrides):
    return make_estimator(store_root, **{**dict(metrics=["accuracy"], batch_size=64, epochs=4,
                                                random_seed=7, verbose=1), **overrides})


def test_pipeline_learns_predicts_saves_and_loads(session, store_root, tmp_path, capsys):
    train, test = separable_df(session).randomSplit([0.8, 0.2], seed=3)
    assembler = VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="features")
    pm = Pipeline(stages=[assembler, _estimator(store_root, validation=0.2)]).fit(train)

    # progress reached the driver while training ran: one line per epoch with rank 0's metrics
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("Epoch ")]
    assert [line.split(" - ")[0] for line in lines] == [f"Epoch {i}/4" for i in range(1, 5)]
    assert all("val_loss" in line and "accuracy" in line for line in lines)

    keras_model = pm.stages[-1]
    history = keras_model.getHistory()
    assert history["epoch"] == [1, 2, 3, 4]
    assert history["loss"][-1] < history["loss"][0]
    assert "val_accuracy" in history

    out = pm.transform(test)
    assert out.columns == test.columns + ["features", "label__output"]
    assert dict(out.dtypes)["label__output"] == "float"
    assert accuracy(out) > 0.9  # chance is about 0.5

    path = str(tmp_path / "pm")
    pm.write().overwrite().save(path)
    loaded = PipelineModel.load(path)
    before = out.orderBy("id").select("label__output").toPandas()["label__output"].to_numpy()
    after = (loaded.transform(test).orderBy("id").select("label__output").toPandas()
             ["label__output"].to_numpy())
    np.testing.assert_allclose(after, before, rtol=1e-6)
    assert loaded.stages[-1].getHistory() == history

    # the returned Keras model carries the user's (unscaled) learning rate and is usable locally
    model = keras_model.getModel()
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(1e-2)
    x = np.array(test.orderBy("id").select("a", "b", "c", "d").collect(), dtype="float32")
    np.testing.assert_allclose(model.predict(x, verbose=0).ravel(), before, rtol=1e-4,
                               atol=1e-5)

    # rank 0 checkpointed every epoch and wrote TensorBoard logs into the store (Keras writes
    # them with TensorFlow: a runtime without it keeps none)
    store = Store.create(store_root)
    run_id = keras_model.getRunId()
    assert store.listdir(store.checkpoint_dir(run_id))[-1] == "epoch-00004.ckpt"
    has_tensorflow = importlib.util.find_spec("tensorflow") is not None
    assert bool(store.listdir(store.logs_dir(run_id))) == has_tensorflow


def test_validation_metrics_equal_evaluate_at_every_epoch(spark, store_root):
    """Each epoch's val_* is the model's score on all the validation rows, as `evaluate` gives it
    (Keras 3.2 ran no validation step on every other epoch when the data ended: zeros)."""
    df = VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="features").transform(
        separable_df(spark, rows=1200).withColumn("is_val", F.col("id") % 4 == 0))
    rows = df.where("is_val").orderBy("id").select("features", "label").collect()
    x = np.array([r.features.toArray() for r in rows], dtype="float32")
    y = np.array([r.label for r in rows], dtype="float32")
    history = _estimator(store_root, validation="is_val", batch_size=32, val_batch_size=16,
                         epochs=4, callbacks=[EvaluateEachEpoch(x, y)]).fit(df).getHistory()
    assert history["epoch"] == [1, 2, 3, 4]
    np.testing.assert_allclose(history["val_loss"], history["evaluate_loss"], rtol=1e-4)
    np.testing.assert_allclose(history["val_accuracy"], history["evaluate_accuracy"], rtol=1e-6)


def test_integer_inputs_reach_the_model_exactly_in_transform(spark, store_root):
    """transform feeds an int64 column as int64, as training does: as float32, 2**24 + 1 (odd)
    would arrive as 2**24 (even)."""
    ids = [2**24 + 1, 2**24 + 3, 2**40 + 1, 2, 4, 7] * 20
    df = spark.createDataFrame([(i, float(i % 2)) for i in ids], "id long, odd double")
    keras.utils.set_random_seed(3)
    inp = keras.Input((1,), dtype="int64", name="id")
    model = keras.Model(inp, keras.layers.Dense(1, kernel_initializer="ones")(Parity()(inp)))
    fitted = _estimator(store_root, model=model, feature_cols=["id"], label_cols=["odd"],
                        loss="mse", metrics=None, num_proc=1, epochs=1).fit(df)
    got = fitted.transform(df.limit(6)).select("id", "odd__output").collect()
    expected = fitted.getModel().predict(np.array([[r.id] for r in got]), verbose=0).ravel()
    np.testing.assert_allclose([r.odd__output for r in got], expected, rtol=1e-6)
    assert got[0].odd__output != pytest.approx(got[3].odd__output)  # odd 2**24 + 1, even 2


def test_a_model_trained_elsewhere_transforms_saves_and_loads(spark, data, tmp_path):
    _, test = data
    df = VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="features").transform(test)
    x = np.array(df.orderBy("id").select("a", "b", "c", "d").collect(), dtype="float32")
    model = mlp()
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(x, (x[:, 0] > 0).astype("float32"), epochs=2, verbose=0)
    model.save(str(tmp_path / "plain.keras"))
    expected = model.predict(x, verbose=0).ravel()

    for given in (model, str(tmp_path / "plain.keras")):
        wrapped = KerasModel.from_keras(given, ["features"], ["p"], batch_size=100)
        got = wrapped.transform(df).orderBy("id").select("p").toPandas()["p"].to_numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    path = str(tmp_path / "wrapped")
    Pipeline(stages=[wrapped]).fit(df).write().save(path)
    again = PipelineModel.load(path).transform(df).orderBy("id").select("p").toPandas()["p"]
    np.testing.assert_allclose(again.to_numpy(), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"feature_cols is \['a', 'b'\]; expected a list of 1 "
                                         r"column name\(s\), one per model input"):
        KerasModel.from_keras(model, ["a", "b"], ["p"])


def test_a_keras_file_saved_on_the_other_backend_predicts_the_same(spark):
    # tests/data/save_on_backend.py wrote each backend's file and its own predictions
    saved_on = "torch" if keras.backend.backend() == "tensorflow" else "tensorflow"
    data = pathlib.Path(__file__).parents[1] / "data"
    expected = np.load(data / f"mlp-{saved_on}.npz")
    df = spark.createDataFrame([(i, row.tolist()) for i, row in enumerate(expected["x"])],
                               "id long, features array<float>")
    wrapped = KerasModel.from_keras(str(data / f"mlp-{saved_on}.keras"), ["features"], ["p"])
    got = wrapped.transform(df).orderBy("id").select("p").toPandas()["p"]
    np.testing.assert_allclose(np.stack(got.to_numpy()), expected["p"], rtol=1e-5, atol=1e-5)


def test_multi_input_multi_output_model(spark, data, store_root):
    train, test = data
    # names with dots are column names, not struct fields, in fit and transform alike
    df = train.withColumn("ab", F.array("a", "b")).withColumn("c.d", array_to_vector(
        F.array("c", "d"))).withColumn("onehot", F.array(1.0 - F.col("label"), F.col("label")))
    in1, in2 = keras.Input((2,), name="ab"), keras.Input((2,), name="cd")
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([in1, in2]))
    out1 = keras.layers.Dense(1, activation="sigmoid", name="pos")(hidden)
    out2 = keras.layers.Dense(2, activation="softmax", name="two")(hidden)
    model = keras.Model([in1, in2], [out1, out2])
    est = _estimator(store_root, model=model, feature_cols=["ab", "c.d"],
                     label_cols=["label", "onehot"], loss=["binary_crossentropy", "mse"],
                     loss_weights=[1.0, 0.5], metrics=None, output_cols=["p", "both"], epochs=3)
    fitted = est.fit(df)
    out = fitted.transform(df.limit(200).withColumn("passenger.id", F.lit(7)))
    assert dict(out.dtypes)["p"] == "float" and dict(out.dtypes)["both"] == "array<float>"
    assert out.columns[-3:] == ["passenger.id", "p", "both"]
    row = out.select("both").first()["both"]
    assert len(row) == 2 and sum(row) == pytest.approx(1.0, abs=1e-4)
    assert accuracy(out, output="p") > 0.85
    assert {"pos_loss", "two_loss"} <= set(fitted.getHistory())


def test_sample_weights_change_the_result(spark, data, store_root):
    train, _ = data
    # weight 0 on every positive row: the model learns to predict negatives only
    weighted = train.withColumn("w", F.when(F.col("label") > 0, 0.0).otherwise(1.0))
    base = dict(feature_cols=["a", "b", "c", "d"], model=_four_input_model(), epochs=2)
    plain = _estimator(store_root, **base).fit(weighted)
    skewed = _estimator(store_root, sample_weight_col="w", **base).fit(weighted)
    mean_plain = plain.transform(weighted).select(F.avg("label__output")).first()[0]
    mean_skewed = skewed.transform(weighted).select(F.avg("label__output")).first()[0]
    assert mean_skewed < 0.2 < mean_plain


def _four_input_model():
    keras.utils.set_random_seed(2)
    inputs = [keras.Input((1,), name=n) for n in "abcd"]
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()(inputs))
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))


def test_validation_by_column_reports_val_metrics(spark, data, store_root):
    train, _ = data
    df = VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="features").transform(
        train.withColumn("is_val", F.rand(5) < 0.2))
    # a Keras metric object (not just a name) works too
    fitted = _estimator(store_root, validation="is_val", epochs=2,
                        metrics=[keras.metrics.BinaryAccuracy(name="accuracy")]).fit(df)
    history = fitted.getHistory()
    assert len(history["val_loss"]) == 2 and len(history["val_accuracy"]) == 2
    # rand() made the plan non-deterministic: its data was written for this fit alone
    store = Store.create(store_root)
    assert store.listdir(store.path("data")) == []


def test_resume_continues_after_the_last_checkpoint(spark, data, store_root):
    train, _ = data
    df = VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="features").transform(train)
    first = _estimator(store_root, run_id="resume-me", epochs=3).fit(df)
    assert first.getHistory()["epoch"] == [1, 2, 3]
    second = _estimator(store_root, run_id="resume-me", epochs=5).fit(df)
    assert second.getHistory()["epoch"] == [4, 5]  # only the remaining epochs ran
    # training went on from the checkpoint, not from scratch
    assert second.getHistory()["loss"][0] < first.getHistory()["loss"][0]


def test_cross_validator_over_epochs(spark, data, store_root):
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    train, _ = data
    df = VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="features").transform(
        train.limit(800))
    # a fixed run_id: each fold and param map still trains in a run of its own
    est = _estimator(store_root, verbose=0, run_id="cv")
    grid = ParamGridBuilder().addGrid(est.epochs, [1, 3]).build()
    evaluator = RegressionEvaluator(labelCol="label", predictionCol="label__output",
                                    metricName="rmse")
    cv = CrossValidator(estimator=est, estimatorParamMaps=grid, evaluator=evaluator, numFolds=2,
                        seed=1)
    cv_model = cv.fit(df)
    assert len(cv_model.avgMetrics) == 2
    assert cv_model.avgMetrics[1] < cv_model.avgMetrics[0]  # 3 epochs beat 1
    assert cv_model.bestModel.getEpochs() == 3
    store = Store.create(store_root)
    runs = store.listdir(store.path("runs"))
    # 2 folds x 2 param maps, and the best map refitted on all the data
    assert len(runs) == 5 and all(r.startswith("cv-") for r in runs)


def test_cross_validator_folds_with_the_same_counts_train_runs_of_their_own(spark, store_root):
    """Folds of a balanced foldCol share columns, row counts and input files: each still trains
    its own run (fold 2 reused fold 1's finished one, trained nothing and was scored with it)."""
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    # fold 0: y = x, fold 1: y = -x, 200 rows each
    rows = [(float(x), float(x if fold == 0 else -x), fold)
            for fold in (0, 1) for x in np.linspace(-1, 1, 200)]
    df = spark.createDataFrame(rows, "x double, y double, fold int")
    df = VectorAssembler(inputCols=["x"], outputCol="features").transform(df)
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    est = _estimator(store_root, model=model, optimizer=keras.optimizers.SGD(0.5), loss="mse",
                     metrics=None, label_cols=["y"], batch_size=32, run_id="cv-folds", epochs=8,
                     verbose=0)
    cv = CrossValidator(estimator=est, estimatorParamMaps=ParamGridBuilder().build(),
                        evaluator=RegressionEvaluator(labelCol="y", predictionCol="y__output"),
                        foldCol="fold", numFolds=2, collectSubModels=True)
    sub = [models[0] for models in cv.fit(df).subModels]  # per fold, the one param map
    kernels = [float(m.getModel().get_weights()[0].ravel()[0]) for m in sub]
    # trained on fold 1 (y = -x), then on fold 0 (y = x): opposite kernels, each from 8 epochs
    assert kernels[0] < -0.5 < 0.5 < kernels[1], kernels
    assert [m.getHistory()["epoch"] for m in sub] == [list(range(1, 9))] * 2


def test_resume_refuses_checkpoints_of_a_different_fit(spark, data, store_root, tmp_path):
    train, _ = data
    df = VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="features").transform(train)
    _estimator(store_root, run_id="mine", epochs=1, num_proc=1).fit(df)
    store = Store.create(store_root)
    before = store.listdir(store.checkpoint_dir("mine"))
    for change, named in [(dict(batch_size=32), "batch_size"),
                          (dict(model=mlp(hidden=8)), "model architecture"),
                          (dict(model=mlp(activation="tanh")), "model architecture"),
                          (dict(optimizer=keras.optimizers.SGD(0.1)), "optimizer")]:
        est = _estimator(store_root, run_id="mine", epochs=2, num_proc=1, **change)
        with pytest.raises(ValueError, match=f"run_id 'mine' holds checkpoints of a different "
                                             f"fit: its {named} changed"):
            est.fit(df)
    assert store.listdir(store.checkpoint_dir("mine")) == before  # nothing trained
    resumed = _estimator(store_root, run_id="mine", epochs=2, num_proc=1).fit(df)
    assert resumed.getHistory()["epoch"] == [2]  # the same fit with more epochs continues
    if importlib.util.find_spec("tensorflow") is not None:  # Keras logs with tf.summary
        assert logged_epochs(store, "mine", tmp_path / "logs") == [0, 1]  # TensorBoard: both fits


def test_params_the_pyspark_way(store_root):
    est = KerasEstimator(batch_size=16, feature_cols=["x"])
    assert est.getBatchSize() == 16 and est.getEpochs() == 1
    est.setEpochs(5).setLabelCols(["y"])
    copied = est.copy({est.batch_size: 8})
    assert copied.getBatchSize() == 8 and copied.getEpochs() == 5 and est.getBatchSize() == 16
    assert "num_proc: number of Horovod ranks" in est.explainParams()
    assert KerasModel().resolved_output_cols.__doc__


@pytest.mark.parametrize("overrides, error, message", [
    (dict(feature_cols=["nope"]), ValueError, "feature_cols: column 'nope' not found"),
    (dict(feature_cols=["features", "a"]), ValueError, "feature_cols has 2 column"),
    (dict(label_cols=["label", "a"]), ValueError, "label_cols has 2 column"),
    (dict(feature_cols=["pair"]), ValueError, "feature column 'pair' has 2 value"),
    (dict(loss=None), ValueError, "loss is not set"),
    (dict(epochs=0), ValueError, "epochs must be a positive integer; got 0"),
    (dict(batch_size=0), ValueError, "batch_size must be a positive integer; got 0"),
    (dict(num_proc=0), ValueError, "num_proc must be a positive integer; got 0"),
    (dict(num_proc=8), ValueError,
     "num_proc=8 but the cluster can run only 2 tasks at once: 2 CPU task slots"),
    (dict(feature_cols=["name"]), ValueError, NAME_HOLDS_STRINGS),
    (dict(store=None), ValueError, "store is not set"),
    (dict(store="/tmp/x"), TypeError, "store must be a sparkdl.Store"),
    (dict(validation=1.5), ValueError, "validation must be a fraction in (0, 1)"),
    (dict(model="not a model"), TypeError, "model must be a keras.Model"),
    (dict(run_id="../escape"), ValueError, "run_id '../escape' is invalid"),
])
def test_bad_input_fails_on_the_driver_before_any_job(spark, store_root, overrides, error,
                                                      message):
    df = spark.createDataFrame([(1.0, "x", [1.0, 2.0], 0.0)], ["a", "name", "ab", "label"])
    df = VectorAssembler(inputCols=["a", "a", "a", "a"], outputCol="features").transform(df)
    df = VectorAssembler(inputCols=["a", "a"], outputCol="pair").transform(df)
    est = _estimator(store_root, **overrides)
    with no_spark_job(spark), pytest.raises(error, match=_escape(message)):
        est.fit(df)


def _escape(text):
    import re

    return re.escape(text)


def test_output_with_a_free_dimension_is_an_array_column(spark, data, store_root):
    train, _ = data
    df = train.withColumn("abc", F.array("a", "b", "c"))
    # per-row output shape (None,): as many values as the input has, not known from the model
    inputs = keras.Input((None,))
    x = keras.layers.Reshape((-1, 1))(inputs)
    x = keras.layers.Dense(1)(x)
    model = keras.Model(inputs, keras.layers.Reshape((-1,))(x))
    fitted = _estimator(store_root, model=model, feature_cols=["abc"], label_cols=["abc"],
                        loss="mse", metrics=None, num_proc=1, epochs=1).fit(df)
    out = fitted.transform(df.limit(50))
    assert dict(out.dtypes)["abc__output"] == "array<float>"
    assert all(len(r["abc__output"]) == 3 for r in out.select("abc__output").collect())


def test_unfitted_pipeline_with_keras_objects_saves_loads_and_fits(spark, data, store_root,
                                                                    tmp_path):
    train, _ = data
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=20, decay_rate=0.9)
    est = _estimator(store_root, optimizer=keras.optimizers.SGD(schedule, momentum=0.9),
                     loss=keras.losses.BinaryCrossentropy(label_smoothing=0.05),
                     metrics=[keras.metrics.AUC(name="auc"), "accuracy"],
                     callbacks=[keras.callbacks.TerminateOnNaN()], num_proc=1, epochs=1,
                     verbose=0)
    assembler = VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="features")
    path = str(tmp_path / "unfitted")
    Pipeline(stages=[assembler, est]).write().save(path)

    loaded = Pipeline.load(path)
    got = loaded.getStages()[-1]
    assert got.getOptimizer().get_config() == est.getOptimizer().get_config()
    assert got.getLoss().get_config() == est.getLoss().get_config()
    assert [m if isinstance(m, str) else m.name for m in got.getMetrics()] == ["auc", "accuracy"]
    assert isinstance(got.getCallbacks()[0], keras.callbacks.TerminateOnNaN)
    for a, b in zip(got.getModel().get_weights(), est.getModel().get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert got.getBatchSize() == 64 and got.getFeatureCols() == ["features"]
    fitted = loaded.fit(train)  # the loaded pipeline trains as the original would
    assert "auc" in fitted.stages[-1].getHistory()


class _Unpicklable(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        import threading

        self.lock = threading.Lock()


def test_a_failed_save_leaves_nothing_behind(spark, store_root, tmp_path):
    import os

    path = str(tmp_path / "broken")
    with pytest.raises(TypeError, match="cannot save the estimator"):
        _estimator(store_root, callbacks=[_Unpicklable()]).write().save(path)
    assert not os.path.exists(path)


def test_an_overwrite_that_cannot_serialise_keeps_the_earlier_save(spark, store_root, tmp_path):
    path = str(tmp_path / "kept")
    _estimator(store_root, epochs=3).write().save(path)
    with pytest.raises(TypeError, match="cannot save the estimator"):
        _estimator(store_root, callbacks=[_Unpicklable()]).write().overwrite().save(path)
    assert KerasEstimator.load(path).getEpochs() == 3


def test_saving_over_an_existing_path_needs_overwrite_and_keeps_what_is_there(session,
                                                                            store_root, tmp_path):
    import os

    path = str(tmp_path / "estimator")
    est = _estimator(store_root)
    est.write().save(path)
    saved = sorted(os.listdir(path))
    with pytest.raises(FileExistsError, match="already exists"):
        est.write().save(path)
    assert sorted(os.listdir(path)) == saved and os.listdir(f"{path}/metadata")
    est.write().overwrite().save(path)
    assert sorted(os.listdir(path)) == saved


def test_a_save_spark_cannot_write_raises_sparks_error_not_the_cleanups(session, store_root):
    with pytest.raises(Exception) as failed:
        _estimator(store_root).write().save("nosuchscheme://bucket/model")
    assert "nosuchscheme" in str(failed.value)
    assert "store url" not in str(failed.value)  # the cleanup's error (Connect's fsspec)


def test_on_spark_connect_a_local_save_path_is_on_the_servers_disk(spark, tmp_path):
    """A Connect client's disk is not the server's (here: the client runs in a mount namespace
    with a tmpfs over the test's directory). A save's existence check and overwrite act where
    the server writes, not on the client's disk."""
    import subprocess
    import sys

    disk = tmp_path / "server-disk"
    disk.mkdir()
    path = str(disk / "model")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    model.set_weights([np.full((1, 1), 1.0, np.float32)])
    KerasModel.from_keras(model, ["x"], ["y"]).write().save(path)  # by the server's side
    port = spark.conf.get("spark.connect.grpc.binding.port")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYSPARK_GATEWAY", "SPARK_CONNECT_MODE"))}
    proc = subprocess.run(
        ["unshare", "--mount", "sh", "-c", 'mount -t tmpfs none "$1" && shift && exec "$@"', "sh",
         str(disk), sys.executable, os.path.join(os.path.dirname(__file__),
                                                 "connect_client_disk.py"),
         "--remote", f"sc://127.0.0.1:{port}", "--path", path],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert re.findall(r"^RESULT (.*)$", proc.stdout, re.M) == ["exists", "overwritten"]
    frame = spark.createDataFrame([(1.0,), (2.0,)], ["x"])
    assert [r.y for r in KerasModel.load(path).transform(frame).collect()] == [3.0, 6.0]


def test_on_spark_connect_a_relative_save_path_is_refused(connect, store_root):
    with pytest.raises(ValueError, match="relative.*server resolves it"):
        _estimator(store_root).write().save("models/relative")


def test_the_jax_backend_is_refused_before_any_job(spark, store_root, monkeypatch):
    df = assembled_df(spark, rows=100)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with no_spark_job(spark), pytest.raises(ValueError, match="Keras backend is 'jax'"):
        _estimator(store_root).fit(df)
