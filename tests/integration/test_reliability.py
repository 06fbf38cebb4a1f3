"""Failures surface fast and clearly, resumes lose nothing, bad input never starts a job."""
from __future__ import annotations

import glob
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import keras
import psutil
import pytest
from keras_helpers import (
    NAME_HOLDS_STRINGS,
    assembled_df,
    hvd_rank,
    logged_epochs,
    make_estimator,
    mlp,
    no_spark_job,
    separable_df,
)
from pyspark.ml.feature import VectorAssembler

import sparkdl
from sparkdl import KerasModel, Store
from sparkdl.launch import RankFailedError
from sparkdl.launch.zygote import RANK_NAME


class FailOnRank(keras.callbacks.Callback):
    """Makes one rank fail when an epoch begins: raise, exit, or SIGKILL itself."""

    def __init__(self, epoch: int, rank: int, how: str) -> None:
        super().__init__()
        self.epoch, self.rank, self.how = epoch, rank, how

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 != self.epoch or hvd_rank() != self.rank:
            return
        if self.how == "raise":
            raise RuntimeError(f"injected failure at epoch {self.epoch}")
        if self.how == "exit":
            os._exit(1)
        os.kill(os.getpid(), signal.SIGKILL)


class KillOnceOnRank(keras.callbacks.Callback):
    """SIGKILLs one rank when an epoch begins, the first time only (a marker file remembers)."""

    def __init__(self, epoch: int, rank: int, marker: str) -> None:
        super().__init__()
        self.epoch, self.rank, self.marker = epoch, rank, marker

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.epoch and hvd_rank() == self.rank and not os.path.exists(
                self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


class HangOnRank(keras.callbacks.Callback):
    """Blocks one rank forever when an epoch begins, as a callback that never returns would."""

    def __init__(self, epoch: int, rank: int) -> None:
        super().__init__()
        self.epoch, self.rank = epoch, rank

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.epoch and hvd_rank() == self.rank:
            threading.Event().wait()


@pytest.fixture(scope="module")
def features_df(spark):
    return assembled_df(spark, rows=1200)


def _estimator(store_root, **overrides):
    return make_estimator(store_root, **{**dict(batch_size=64, epochs=4, random_seed=3,
                                                verbose=0), **overrides})


def _rank_children() -> list[psutil.Process]:
    """Rank processes started under this test process (not by other sessions' clusters)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.name() == RANK_NAME:
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


def _listening_ports() -> set[int]:
    """Ports listened on by this process's descendants: the Spark JVM and the Python workers the
    rendezvous runs in. PySpark's own daemon (restarted after a killed task) is not ours."""
    me = psutil.Process()
    ours = {me.pid}
    for proc in me.children(recursive=True):
        try:
            daemon = "pyspark.daemon" in proc.cmdline() and "pyspark.daemon" not in (
                proc.parent().cmdline())
        except psutil.NoSuchProcess:
            continue
        if not daemon:
            ours.add(proc.pid)
    return {c.laddr.port for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.pid in ours}


def _eventually(check, seconds=15.0):
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.25)
    return check()


# resumed after the hardest failure (a SIGKILL) and on Spark Connect; not every case: suite time
@pytest.mark.parametrize("how, expected, kind, resume", [
    ("raise", "RuntimeError: injected failure at epoch 3", "classic", False),
    ("exit", "exited with code 1", "classic", False),
    ("kill", "was killed by signal SIGKILL", "classic", True),
    ("raise", "RuntimeError: injected failure at epoch 3", "connect", True),
])
def test_dying_rank_fails_fit_fast_naming_the_rank_then_resume_completes(
        request, features_df, store_root, how, expected, kind, resume):
    if kind == "connect":  # the same fit from a Spark Connect session
        features_df = assembled_df(request.getfixturevalue("connect"), rows=1200)
    ports_before = _listening_ports()
    est = _estimator(store_root, run_id=f"dies-{how}", epochs=5, max_retries=0,
                     callbacks=[FailOnRank(epoch=3, rank=1, how=how)])
    t0 = time.monotonic()
    with pytest.raises(RankFailedError) as info:
        est.fit(features_df)
    took = time.monotonic() - t0
    assert took < 60, f"fit took {took:.1f}s to fail"
    assert info.value.rank == 1
    assert "rank 1" in str(info.value) and expected in str(info.value)
    # nothing left behind: no rank process, no rendezvous or channel port
    assert _eventually(lambda: not _rank_children()), _rank_children()
    assert _eventually(lambda: not (_listening_ports() - ports_before)), (
        _listening_ports() - ports_before)

    if not resume:
        return
    # the same run_id resumes from the last completed checkpoint; the run has exactly 5 epochs
    store = Store.create(store_root)
    done = sorted(store.listdir(store.checkpoint_dir(f"dies-{how}")))
    last = int(done[-1][len("epoch-"):-len(".ckpt")])
    assert last in (1, 2)  # epochs completed before rank 1 died at the start of epoch 3
    resumed = _estimator(store_root, run_id=f"dies-{how}", epochs=5).fit(features_df)
    assert resumed.getHistory()["epoch"] == list(range(last + 1, 6))
    assert resumed.getRunHistory()["epoch"] == [1, 2, 3, 4, 5]  # no gap, no repeat
    assert len(resumed.getRunHistory()["loss"]) == 5


def test_two_fits_at_once_on_one_spark_context(spark, features_df, store_root):
    results, errors = {}, []

    def fit(run_id):
        try:
            results[run_id] = _estimator(store_root, run_id=run_id, num_proc=1,
                                         epochs=2).fit(features_df)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=fit, args=(f"concurrent-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert sorted(results) == ["concurrent-0", "concurrent-1"]
    assert all(m.getHistory()["epoch"] == [1, 2] for m in results.values())


def _bad_frames(spark):
    """name -> (DataFrame, estimator overrides, error type, message, job allowed)."""
    from pyspark.ml.linalg import Vectors

    base = [(1.0, 2.0, 3.0, 4.0, 1.0, "s", [1.0, 2.0]), (2.0, 1.0, 0.0, 1.0, 0.0, "t", [3.0])]
    cols = ["a", "b", "c", "d", "label", "name", "arr"]
    df = spark.createDataFrame(base, cols)
    nulls = spark.createDataFrame([(1.0, None), (2.0, 0.0), (None, 1.0)], "a double, label double")
    vec = spark.createDataFrame([(Vectors.dense([1.0, 2.0]), 1.0),
                                 (Vectors.dense([3.0, 4.0]), 0.0)], ["v", "label"])
    four = VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="features").transform(df)
    one_input = dict(model=mlp(inputs=1))
    return {
        "missing column": (four, dict(feature_cols=["nope"]), ValueError,
                           "column 'nope' not found", False),
        "null in a feature": (nulls, dict(feature_cols=["a"], **one_input), ValueError,
                              "'a'", True),
        "null in a label": (nulls.fillna({"a": 0.0}), dict(feature_cols=["a"], **one_input),
                            ValueError, "'label'", True),
        "string column": (df, dict(feature_cols=["name"], **one_input), ValueError,
                          NAME_HOLDS_STRINGS, False),
        "ragged array": (df, dict(feature_cols=["arr"], model=mlp(inputs=2)), ValueError,
                         "'arr'", True),
        "vector size": (vec, dict(feature_cols=["v"]), ValueError,
                        "feature column 'v' has 2 value(s) per row", True),
        "label count": (four, dict(label_cols=["label", "a"]), ValueError,
                        "label_cols has 2 column(s)", False),
        "empty DataFrame": (four.limit(0), {}, ValueError, "DataFrame has no rows", True),
        "num_proc=0": (four, dict(num_proc=0), ValueError,
                       "num_proc must be a positive integer; got 0", False),
        "unpicklable custom object": (four, dict(custom_objects={"lock": threading.Lock()}),
                                      TypeError, "custom_objects cannot be pickled", False),
        "negative seed": (four, dict(random_seed=-1), ValueError,
                          "random_seed must be an integer in [0, 2**31) or None; got -1", False),
    }


CASES = ["missing column", "null in a feature", "null in a label", "string column",
         "ragged array", "vector size", "label count", "empty DataFrame", "num_proc=0",
         "unpicklable custom object", "negative seed"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_errors_before_training_or_writing(spark, store_root, case):
    df, overrides, error, message, job_allowed = _bad_frames(spark)[case]
    est = _estimator(store_root, **overrides)
    store = Store.create(store_root)
    if job_allowed:
        # needs the data: one read-only profiling job, but nothing written and no training
        with pytest.raises(error) as info:
            est.fit(df)
    else:
        with no_spark_job(spark), pytest.raises(error) as info:
            est.fit(df)
    assert message in str(info.value)
    assert store.listdir(store.path("data")) == [] and store.listdir(store.path("runs")) == []


def test_invalid_store_url_errors_at_create():
    with pytest.raises(ValueError, match="nosuchscheme"):
        Store.create("nosuchscheme://bucket/path")


def test_saving_over_an_existing_model_path_needs_overwrite(spark, features_df, store_root,
                                                            tmp_path):
    model = _estimator(store_root, epochs=1, num_proc=1).fit(features_df)
    path = str(tmp_path / "model")
    model.save(path)
    with pytest.raises(FileExistsError, match="already exists.*overwrite"):
        model.save(path)
    assert KerasModel.load(path).getHistory() == model.getHistory()  # the first save is intact
    users = tmp_path / "users"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists"):
        model.save(str(users))
    assert [p.name for p in users.iterdir()] == ["notes.txt"]
    model.write().overwrite().save(path)
    assert KerasModel.load(path).getHistory() == model.getHistory()


def _sleep_on_every_rank():
    from sparkdl.train.backend import horovod

    horovod().init()
    time.sleep(300)


def test_interrupting_the_driver_cancels_the_job_and_ends_the_ranks(spark, session):
    import _thread

    ports_before = _listening_ports()

    def interrupt_once_ranks_run():
        if _eventually(lambda: len(_rank_children()) == 2, seconds=120):
            _thread.interrupt_main()  # what Ctrl-C or a notebook's stop button does

    # Python's own SIGINT handler, as in a Jupyter kernel, not pyspark's (which cancels all jobs)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=interrupt_once_ranks_run, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            sparkdl.run(_sleep_on_every_rank, num_proc=2)
    finally:
        signal.signal(signal.SIGINT, previous)
    # the barrier job was cancelled: its ranks are gone and the slots free at once
    assert _eventually(lambda: not _rank_children()), _rank_children()
    assert _eventually(lambda: not spark.sparkContext.statusTracker().getActiveJobsIds())
    assert _eventually(lambda: not (_listening_ports() - ports_before)), (
        _listening_ports() - ports_before)
    assert sparkdl.run(lambda: 7, num_proc=2) == [7, 7]  # the session is usable again


def test_hung_rank_fails_fit_within_stall_timeout_naming_it(features_df, store_root):
    # 20 s: a loaded 2-core machine can spend 6 s importing TensorFlow before the first beat
    est = _estimator(store_root, epochs=3, stall_timeout=20, max_retries=0,
                     callbacks=[HangOnRank(2, 1)])
    started = time.monotonic()
    with pytest.raises(RankFailedError, match=r"rank 1 on \S+ stopped making progress: no "
                                              r"heartbeat for stall_timeout=20s") as info:
        est.fit(features_df)
    assert info.value.rank == 1
    assert "its last output lines" in str(info.value)
    assert time.monotonic() - started < 120  # materialise, start, one epoch, then 20 s
    assert _eventually(lambda: not _rank_children())  # the peer blocked on it is ended too


def test_killed_rank_is_relaunched_from_the_last_checkpoint_by_itself(features_df, store_root,
                                                                       tmp_path, caplog):
    marker = str(tmp_path / "killed-once")
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "sparkdl-tb-*")))
    fitted = _estimator(store_root, epochs=5,
                        callbacks=[KillOnceOnRank(3, 1, marker)]).fit(features_df)
    assert os.path.exists(marker)  # rank 1 was killed in epoch 3 ...
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert retries == ["sparkdl: rank 1: was killed by signal SIGKILL in epoch 3; retry 1/2 "
                       "from the last checkpoint"]
    # ... and the fit finished by itself, each epoch exactly once
    assert fitted.getHistory()["epoch"] == [1, 2, 3, 4, 5]
    assert fitted.getRunHistory()["epoch"] == [1, 2, 3, 4, 5]
    assert len(fitted.getHistory()["loss"]) == 5
    # the TensorBoard logs in the store hold every epoch, those of the failed attempt too, and
    # no local log folder is left behind (Keras logs with tf.summary: only where TF is installed)
    if importlib.util.find_spec("tensorflow") is not None:
        assert logged_epochs(Store.create(store_root), fitted.getRunId(),
                             tmp_path / "logs") == [0, 1, 2, 3, 4]
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "sparkdl-tb-*"))) <= before


def test_a_failure_that_repeats_identically_is_not_retried(features_df, store_root):
    est = _estimator(store_root, epochs=4, callbacks=[FailOnRank(epoch=2, rank=1, how="raise")])
    with pytest.raises(RankFailedError) as info:
        est.fit(features_df)
    text = str(info.value)
    assert text.startswith("fit failed after 2 attempt(s) (the same failure repeated):\n"
                           "  attempt 1: rank 1: RuntimeError: injected failure at epoch 2 in "
                           "epoch 2\n  attempt 2: rank 1: RuntimeError: injected failure at "
                           "epoch 2 in epoch 2\nlast failure:\n"), text
    assert info.value.rank == 1
    assert _eventually(lambda: not _rank_children())


_INTERRUPTED_FIT = """
import sys
sys.path.insert(0, {helpers!r})
from keras_helpers import SlowEpochs, make_estimator
from pyspark.ml.feature import VectorAssembler
from pyspark.sql import SparkSession

spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
df = VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="features").transform(
    spark.read.parquet({data!r}))
make_estimator({store!r}, run_id="interrupted", batch_size=64, epochs=30, random_seed=3,
               verbose=1, callbacks=[SlowEpochs(1.0)]).fit(df)
"""


@pytest.mark.own_spark
def test_sigint_to_a_driver_process_ends_everything_and_the_run_resumes(spark, store_root,
                                                                        tmp_path):
    data = str(tmp_path / "data.parquet")
    separable_df(spark, rows=800, seed=6).write.parquet(data)
    script = _INTERRUPTED_FIT.format(helpers=os.path.dirname(__file__), data=data,
                                     store=store_root)
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    store = Store.create(store_root)
    try:
        assert _eventually(lambda: store.exists(store.checkpoint_dir("interrupted")) and any(
            store.listdir(store.checkpoint_dir("interrupted"))), seconds=180), driver.poll()
        driver.send_signal(signal.SIGINT)  # Ctrl-C in the terminal that runs the driver
        _, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode != 0 and "KeyboardInterrupt" in err, err[-2000:]
    assert _eventually(lambda: not _all_rank_processes()), _all_rank_processes()

    # the last checkpoint is intact: the same run resumes from it
    done = sorted(store.listdir(store.checkpoint_dir("interrupted")))
    last = int(done[-1][len("epoch-"):-len(".ckpt")])
    df = VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="features").transform(
        spark.read.parquet(data))
    resumed = make_estimator(store_root, run_id="interrupted", batch_size=64, epochs=last + 1,
                             random_seed=3, verbose=0).fit(df)
    assert resumed.getHistory()["epoch"] == [last + 1]
    assert resumed.getRunHistory()["epoch"] == list(range(1, last + 2))


def _all_rank_processes() -> list[int]:
    """Rank processes anywhere on this machine (the interrupted driver was not our child; tests
    run one at a time)."""
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == RANK_NAME:
            found.append(proc.pid)
    return found
