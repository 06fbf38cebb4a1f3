"""Time-to-error of each fault sparkdl must surface: rank failures, hung ranks, short slots,
bad input; and time to a finished fit when a killed rank is relaunched by itself (max_retries).
Prints one row per case: seconds from calling fit to the exception (or the end) on the driver.

Run: .venv/bin/python bench/bench_faults.py [--master spark://127.0.0.1:7177]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import keras
import psutil
from pyspark.ml.feature import VectorAssembler
from pyspark.sql import SparkSession

from sparkdl import KerasEstimator, Store
from sparkdl.launch.zygote import RANK_NAME


class _Fail(keras.callbacks.Callback):
    """Rank 1 fails as the 2nd epoch begins: raise, exit, or SIGKILL itself."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how

    def on_epoch_begin(self, epoch, logs=None):
        import horovod.tensorflow as hvd

        if epoch == 1 and hvd.rank() == 1:
            if self.how == "raise":
                raise RuntimeError("injected")
            if self.how == "exit":
                os._exit(1)
            os.kill(os.getpid(), signal.SIGKILL)


class _Hang(keras.callbacks.Callback):
    """Rank 1 blocks forever as the 2nd epoch begins (a callback that never returns)."""

    def on_epoch_begin(self, epoch, logs=None):
        import horovod.tensorflow as hvd

        if epoch == 1 and hvd.rank() == 1:
            threading.Event().wait()


class _KillOnce(_Fail):
    """Rank 1 SIGKILLs itself as the 2nd epoch begins, in the first attempt only."""

    def __init__(self, marker: str) -> None:
        super().__init__("kill")
        self.marker = marker

    def on_epoch_begin(self, epoch, logs=None):
        import horovod.tensorflow as hvd

        if epoch == 1 and hvd.rank() == 1 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            super().on_epoch_begin(epoch, logs)


class _LoseExecutorOnce(keras.callbacks.Callback):
    """Rank 1 SIGKILLs the executor JVM it runs under as the 2nd epoch begins, once."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def on_epoch_begin(self, epoch, logs=None):
        import horovod.tensorflow as hvd

        if epoch != 1 or hvd.rank() != 1 or os.path.exists(self.marker):
            return
        open(self.marker, "w").close()
        jvm = next(p for p in psutil.Process().parents()
                   if "CoarseGrainedExecutorBackend" in " ".join(p.cmdline()))
        jvm.send_signal(signal.SIGKILL)


def _model(inputs: int = 4) -> keras.Model:
    return keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(1)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--master", default="local[2]",
                        help="spark://... of a standalone cluster (make cluster-up) adds the "
                             "lost-executor row")
    master = parser.parse_args().master
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.master(master).config("spark.ui.enabled", "false")
             .config("spark.driver.host", "127.0.0.1").getOrCreate())
    spark.sparkContext.setLogLevel("OFF")
    rows = [(float(i), float(i % 3), float(i % 5), float(i % 7), float(i % 2)) for i in range(2000)]
    df = VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="features").transform(
        spark.createDataFrame(rows, ["a", "b", "c", "d", "y"])).cache()
    df.count()
    strings = spark.createDataFrame([("x", 1.0)] * 4, ["s", "y"])
    nulls = spark.createDataFrame([(None, 1.0)] + [(1.0, 0.0)] * 3, "a double, y double")
    store = Store.create(tempfile.mkdtemp(prefix="sparkdl-faults-"))
    base = dict(model=_model(), optimizer="adam", loss="mse", feature_cols=["features"],
                label_cols=["y"], store=store, num_proc=2, epochs=3, verbose=0)
    once = os.path.join(tempfile.mkdtemp(prefix="sparkdl-faults-"), "killed")
    cases = [
        ("no fault: a 3-epoch fit (baseline)", df, {}),
        ("rank 1 SIGKILL once (epoch 2), retried", df, dict(callbacks=[_KillOnce(once)])),
        ("rank 1 raises in a callback (epoch 2)", df, dict(callbacks=[_Fail("raise")],
                                                           max_retries=0)),
        ("rank 1 raises every time, retried", df, dict(callbacks=[_Fail("raise")])),
        ("rank 1 os._exit(1) (epoch 2)", df, dict(callbacks=[_Fail("exit")], max_retries=0)),
        ("rank 1 SIGKILL (epoch 2)", df, dict(callbacks=[_Fail("kill")], max_retries=0)),
        ("rank 1 hangs (epoch 2), stall_timeout=10", df,
         dict(callbacks=[_Hang()], stall_timeout=10, max_retries=0)),
        ("num_proc=3 > 2 slots", df, dict(num_proc=3)),
        ("missing column", df, dict(feature_cols=["nope"])),
        ("string feature column", strings, dict(feature_cols=["s"], model=_model(1))),
        ("null in a feature (profiling job)", nulls, dict(feature_cols=["a"], model=_model(1))),
        ("label count != outputs", df, dict(label_cols=["y", "a"])),
        ("num_proc=0", df, dict(num_proc=0)),
        ("unpicklable custom object", df, dict(custom_objects={"lock": threading.Lock()})),
    ]
    if master.startswith("spark://"):
        lost = os.path.join(tempfile.mkdtemp(prefix="sparkdl-faults-"), "lost")
        cases.insert(1, ("executor JVM killed (epoch 2), recovered", df,
                         dict(callbacks=[_LoseExecutorOnce(lost)])))
    print(f"{'fault':40s} {'seconds':>8s}  error")
    for name, frame, overrides in cases:
        t0 = time.monotonic()
        try:
            fitted = KerasEstimator(**{**base, **overrides}).fit(frame)
            runs = fitted.getRunHistory()["epoch"]
            intact = runs == list(range(1, len(runs) + 1))
            outcome = (f"finished; run epochs {runs} "
                       f"({'none lost or repeated' if intact else 'EPOCHS LOST OR REPEATED'})")
        except Exception as exc:  # the error is the measurement
            outcome = f"{type(exc).__name__}: {str(exc).splitlines()[0][:70]}"
        print(f"{name:40s} {time.monotonic() - t0:8.2f}  {outcome}", flush=True)
    spark.stop()
    seconds, outcome = _sigint_to_a_driver()
    print(f"{'SIGINT to a driver mid-fit':40s} {seconds:8.2f}  {outcome}", flush=True)


_DRIVER = """
import keras, time
from pyspark.ml.feature import VectorAssembler
from pyspark.sql import SparkSession
from sparkdl import KerasEstimator, Store

class Slow(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(1)

spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
rows = [(float(i), float(i % 3), float(i % 5), float(i % 7), float(i % 2)) for i in range(2000)]
df = VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="features").transform(
    spark.createDataFrame(rows, ["a", "b", "c", "d", "y"]))
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
KerasEstimator(model=model, optimizer="adam", loss="mse", feature_cols=["features"],
               label_cols=["y"], store=Store.create({store!r}), num_proc=2, epochs=50,
               run_id="interrupted", verbose=0, callbacks=[Slow()]).fit(df)
"""


def _sigint_to_a_driver() -> tuple[float, str]:
    """Seconds from SIGINT to a driver process (after its first checkpoint) until the driver and
    every rank process are gone."""
    store = Store.create(tempfile.mkdtemp(prefix="sparkdl-faults-sigint-"))
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER.format(store=store.url)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    checkpoints = store.checkpoint_dir("interrupted")
    deadline = time.monotonic() + 300
    while not (store.exists(checkpoints) and store.listdir(checkpoints)):
        if driver.poll() is not None or time.monotonic() > deadline:
            driver.kill()
            return float("nan"), "the driver never wrote a checkpoint"
        time.sleep(0.2)
    t0 = time.monotonic()
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=120)
    while _rank_processes() and time.monotonic() - t0 < 120:
        time.sleep(0.1)
    gone = "all processes gone" if not _rank_processes() else "RANKS LEFT"
    how = "KeyboardInterrupt" if "KeyboardInterrupt" in err else f"exit {driver.returncode}"
    return time.monotonic() - t0, f"{how}; {gone}"


def _rank_processes() -> list[int]:
    return [p.pid for p in psutil.process_iter(["name"])
            if p.info["name"] == RANK_NAME]


if __name__ == "__main__":
    main()
