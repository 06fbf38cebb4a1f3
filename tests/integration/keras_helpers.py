"""Small data sets and models shared by the Keras estimator tests, and a runner for scripts."""
from __future__ import annotations

import contextlib
import runpy
import sys
import uuid

import keras
import numpy as np
from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F


def strings_refused(column: str, message: str) -> str:
    """`message` on TensorFlow; on other backends, which have no string tensors, the start of
    the message that refuses the string feature `column` whatever the model input."""
    if keras.backend.backend() == "tensorflow":
        return message
    return f"feature column {column!r} for model input"


NAME_HOLDS_STRINGS = strings_refused("name", "feature column 'name' holds strings but model input")


def separable_df(spark, rows=2000, seed=0):
    """Columns a, b, c, d (double) and label = (a - 2b + 0.5c > 0), plus an id."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) > 0).astype(float)
    data = [(i, *map(float, r), float(t)) for i, (r, t) in enumerate(zip(x, y, strict=True))]
    return spark.createDataFrame(data, ["id", "a", "b", "c", "d", "label"])


def mlp(inputs=4, hidden=16, activation="sigmoid"):
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((inputs,)),
                                keras.layers.Dense(hidden, activation="relu"),
                                keras.layers.Dense(1, activation=activation)])


def assembled_df(spark, rows, seed=0):
    """separable_df with a, b, c, d assembled into an ML vector column `features`, cached."""
    from pyspark.ml.feature import VectorAssembler

    return VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="features").transform(
        separable_df(spark, rows=rows, seed=seed)).cache()


def make_estimator(store_root, **params):
    """A KerasEstimator training `mlp()` on `features` -> `label` on 2 ranks; `params` override."""
    from sparkdl import KerasEstimator, Store

    base = dict(model=mlp(), optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy",
                feature_cols=["features"], label_cols=["label"], store=Store.create(store_root),
                num_proc=2)
    return KerasEstimator(**{**base, **params})


def accuracy(df, label="label", output="label__output"):
    hit = ((F.col(output) > 0.5).cast("double") == F.col(label)).cast("double")
    return df.select(F.avg(hit)).first()[0]


@contextlib.contextmanager
def no_spark_job(spark):
    """Assert that the block starts no Spark job (the block runs in this thread's job group)."""
    sc = spark.sparkContext
    group = f"no-job-{uuid.uuid4().hex[:8]}"
    sc.setJobGroup(group, "must start no job")
    try:
        yield
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        assert list(sc.statusTracker().getJobIdsForGroup(group)) == []


@keras.saving.register_keras_serializable(package="sparkdl_tests")
class Scale(keras.layers.Layer):
    """A custom layer with a trainable scalar, known to ranks only through the Keras registry."""

    def build(self, input_shape):
        self.alpha = self.add_weight(shape=(), initializer="ones", name="alpha")

    def call(self, x):
        return x * self.alpha


@keras.saving.register_keras_serializable(package="sparkdl_tests")
class SubclassedMLP(keras.Model):
    """A subclassed model (`call`, no Input layer) using the custom layer."""

    def __init__(self, hidden=16, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden
        self.dense = keras.layers.Dense(hidden, activation="relu")
        self.scale = Scale()
        self.out = keras.layers.Dense(1, activation="sigmoid")

    def call(self, x):
        return self.out(self.scale(self.dense(x)))

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden}


def squared_error(y_true, y_pred):
    """A custom loss passed through custom_objects."""
    return keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)


def mean_gap(y_true, y_pred):
    """A custom metric function passed as it is, not through custom_objects."""
    return keras.ops.mean(keras.ops.abs(y_true - y_pred), axis=-1)


class RecordOnRanks(keras.callbacks.Callback):
    """Each rank writes its learning rate per epoch and its final weights to `directory`."""

    def __init__(self, directory):
        super().__init__()
        self.directory = directory
        self.rates = []

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        self.rates.append((int(inner.iterations.numpy()), float(inner.learning_rate.numpy())))

    def on_train_end(self, logs=None):
        import json
        import os

        flat = np.concatenate([np.ravel(w) for w in self.model.get_weights()])
        path = os.path.join(self.directory, f"rank{hvd_rank()}")
        np.save(path + ".npy", flat)
        with open(path + ".json", "w") as f:
            json.dump({"rates": self.rates}, f)


def hvd_rank():
    """This Horovod rank, through the Horovod module of the Keras backend the fit runs on."""
    import importlib

    return importlib.import_module("horovod." + keras.backend.backend()).rank()


def recorded(directory, rank):
    """(learning-rate records, final weights) that RecordOnRanks wrote for `rank`."""
    import json
    import os

    path = os.path.join(directory, f"rank{rank}")
    with open(path + ".json") as f:
        rates = json.load(f)["rates"]
    return rates, np.load(path + ".npy")


@keras.saving.register_keras_serializable(package="sparkdl_tests")
class CountRows(keras.layers.Layer):
    """Passes its input through; while training, counts each row id (input column 0) it sees."""

    def __init__(self, rows, **kwargs):
        super().__init__(**kwargs)
        self.rows = rows

    def build(self, input_shape):
        self.seen = self.add_weight(shape=(self.rows,), initializer="zeros", trainable=False,
                                    name="seen")

    def call(self, x, training=None):
        if training:
            ids = keras.ops.cast(x[:, 0], "int32")
            self.seen.assign_add(keras.ops.sum(keras.ops.one_hot(ids, self.rows), axis=0))
        return x

    def get_config(self):
        return {**super().get_config(), "rows": self.rows}


class SaveSeenRows(keras.callbacks.Callback):
    """At the end of training each rank saves its CountRows counts to `directory`."""

    def __init__(self, directory):
        super().__init__()
        self.directory = directory

    def on_train_end(self, logs=None):
        import os

        [layer] = [x for x in self.model.layers if isinstance(x, CountRows)]
        np.save(os.path.join(self.directory, f"seen{hvd_rank()}.npy"), layer.seen.numpy())


def job_descriptions(spark):
    """Descriptions of the application's Spark jobs so far, as the Spark UI lists them."""
    jobs = spark.sparkContext._jsc.sc().statusStore().jobsList(None)  # a Scala Seq
    found = [jobs.apply(i).description() for i in range(jobs.size())]
    return [d.get() for d in found if d.isDefined()]


class SlowEpochs(keras.callbacks.Callback):
    """Makes every epoch last at least `seconds`, so that a poll can see training still running."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_epoch_end(self, epoch, logs=None):
        import time

        time.sleep(self.seconds)


class EvaluateEachEpoch(keras.callbacks.Callback):
    """Logs ``evaluate_<metric>``: `model.evaluate` on the given rows, after each epoch."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def on_epoch_end(self, epoch, logs=None):
        scores = self.model.evaluate(self.x, self.y, batch_size=len(self.y), verbose=0,
                                     return_dict=True)
        logs.update({f"evaluate_{name}": float(value) for name, value in scores.items()})


@keras.saving.register_keras_serializable(package="sparkdl_tests")
class Parity(keras.layers.Layer):
    """1.0 for odd integers, 0.0 for even ones: exact only while the integers are."""

    def call(self, x):
        return keras.ops.cast(x % 2, "float32")


def logged_epochs(store, run_id, local_dir):
    """The epochs (0-based steps) of `epoch_loss` in the run's TensorBoard logs in the store."""
    import glob
    import os

    import tensorflow as tf

    store.get_dir(store.logs_dir(run_id), str(local_dir))
    steps = []
    for path in glob.glob(os.path.join(str(local_dir), "train", "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            steps += [event.step for v in event.summary.value if v.tag == "epoch_loss"]
    return sorted(steps)


def run_script(path, args, spark, monkeypatch, capsys) -> str:
    """Run the script at `path` as `python path args...` does (``__main__``, its argv, its folder
    first on sys.path), in the test session's Spark: its ``getOrCreate()`` gets that session and
    its closing ``spark.stop()`` is kept from ending it. Returns what it printed."""
    stopped = []
    monkeypatch.setattr(SparkSession, "stop", lambda session: stopped.append(session))
    monkeypatch.setattr(sys, "argv", [str(path), *map(str, args)])
    monkeypatch.syspath_prepend(str(path.parent))
    conf = dict(spark.conf.getAll)
    capsys.readouterr()
    try:
        runpy.run_path(str(path), run_name="__main__")
    finally:  # its builder's settings (shuffle partitions, app name) set back
        for key, value in dict(spark.conf.getAll).items():
            if conf.get(key) != value:
                # a static setting (the console progress bar) is refused: it took no effect
                with contextlib.suppress(AnalysisException):
                    if key in conf:
                        spark.conf.set(key, conf[key])
                    else:
                        spark.conf.unset(key)
    assert stopped == [spark], "the script did not end by stopping its SparkSession"
    return capsys.readouterr().out
