"""Shared helpers of the benchmarks: data, models, timing, memory sampling, the results table.

Imports neither sparkdl nor pyspark at module level: `peer_task.py` (in `.venv-peer`, without
sparkdl) and `local_task.py` (a plain TensorFlow process) use it too.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import psutil

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
MiB = 1 << 20
# before any Spark starts: executors run this interpreter, TensorFlow logs only errors
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


# --- data and models ------------------------------------------------------------------------

def make_dataset(folder: str, rows: int, dim: int, seed: int = 0) -> tuple[str, str]:
    """A learnable binary task, label = (x @ w > 0), as `data.npz` (for in-process baselines)
    and `data.parquet` (features list<float>, label double) holding the same rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, dim), dtype=np.float32)
    y = (x @ rng.standard_normal(dim).astype(np.float32) > 0).astype(np.float64)
    npz, parquet = os.path.join(folder, "data.npz"), os.path.join(folder, "data.parquet")
    np.savez(npz, x=x, y=y)
    offsets = pa.array(np.arange(0, rows * dim + 1, dim, dtype=np.int32))
    features = pa.ListArray.from_arrays(offsets, pa.array(x.reshape(-1)))
    pq.write_table(pa.table({"features": features, "label": pa.array(y)}), parquet)
    return npz, parquet


def features_df(spark: Any, parquet: str, rows: int | None = None,
                partitions: int | None = None) -> Any:
    """The Parquet rows as (features: ML vector, label: double), cached, in `partitions` (by
    default 2 per core; a Spark Connect session must say)."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    df = spark.read.parquet(parquet)
    if rows is not None:
        df = df.limit(rows)
    df = df.select(array_to_vector("features").alias("features"), F.col("label"))
    df = df.repartition(partitions or 2 * spark.sparkContext.defaultParallelism).cache()
    df.count()
    return df


def load_npz(path: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as data:
        return data["x"], data["y"].astype(np.float32)


def mlp(dim: int, hidden: Sequence[int], seed: int = 1) -> Any:
    """Dense(relu) layers then one sigmoid unit; the same weights for the same seed."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((dim,))]
    layers += [keras.layers.Dense(h, activation="relu") for h in hidden]
    layers.append(keras.layers.Dense(1, activation="sigmoid"))
    return keras.Sequential(layers)


COMPILE = {"loss": "binary_crossentropy", "metrics": ["accuracy"]}
# Runs before timing a Spark stage: the JVM's JIT takes several (materialize of 200k rows took
# 4.7, 3.8 and 2.9 s in a row; transform runs kept falling after one warm-up)
WARM_UP_RUNS = 3
LEARNING_RATE = 1e-3


# --- timing ---------------------------------------------------------------------------------

def fit_args(description: str) -> argparse.Namespace:
    """--rows, --dim, --epochs and --repeat of the benchmarks that time whole fits."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args()


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def process_start_time() -> float:
    """Wall-clock time this process started, to the clock tick: its age from /proc, taken from
    now (psutil's create_time adds the boot time rounded to a second: 0.76 s off here)."""
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    return time.time() - age


class PhaseTimes(keras.callbacks.Callback):
    """Records, on each rank, wall-clock times of the rank's life into `<out_dir>/rank<N>.json`.

    `created`: the rank process started; `unpickled`: this callback was unpickled on the rank
    (after TensorFlow's import); `train_begin`/`train_end`: inside model.fit; `exit`: the
    interpreter exits. Also the rank's peak RSS and Keras' steps per epoch. No batch hooks, so it
    adds no per-step work.
    """

    def __init__(self, out_dir: str, pin_cpus: Sequence[int] | None = None) -> None:
        super().__init__()
        self.out_dir, self.pin_cpus = out_dir, list(pin_cpus) if pin_cpus else None
        self.times: dict[str, Any] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.times = {"unpickled": time.time()}

    def on_train_begin(self, logs: Any = None) -> None:
        if self.pin_cpus:  # every thread of the rank, TensorFlow's pools included
            for tid in os.listdir("/proc/self/task"):
                try:
                    os.sched_setaffinity(int(tid), self.pin_cpus)
                except OSError:
                    pass
        self.times.update(train_begin=time.time(), epochs=[])
        atexit.register(self._write, final=True)

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._epoch_start = time.time()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.times["epochs"].append(time.time() - self._epoch_start)

    def on_train_end(self, logs: Any = None) -> None:
        self.times.update(train_end=time.time(), steps=self.params.get("steps"))
        self._write(final=False)

    def _write(self, final: bool) -> None:
        if not self.out_dir:
            return
        rank = int(os.environ.get("HOROVOD_RANK", "0"))
        if final:
            self.times["exit"] = time.time()
        self.times.update(rank=rank, created=process_start_time(),
                          maxrss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        os.makedirs(self.out_dir, exist_ok=True)
        path = os.path.join(self.out_dir, f"rank{rank}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(self.times, f)
        os.replace(path + ".tmp", path)


def read_phase_times(out_dir: str) -> dict[int, dict[str, Any]]:
    """rank -> what its PhaseTimes wrote."""
    found = {}
    for name in sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []:
        if name.startswith("rank") and name.endswith(".json"):
            with open(os.path.join(out_dir, name)) as f:
                found[int(name[4:-5])] = json.load(f)
    return found


# --- memory ---------------------------------------------------------------------------------

def process_role(proc: psutil.Process) -> str:
    # imported here: peer_task.py imports this module in .venv-peer, which has no sparkdl
    from sparkdl.launch.zygote import RANK_NAME, ZYGOTE_NAME

    cmd = " ".join(proc.cmdline())
    if proc.name() == ZYGOTE_NAME:
        return "zygote"
    if proc.name() == RANK_NAME or "horovod.spark.task" in cmd or "gloo_exec_fn" in cmd:
        return "rank"
    if proc.name().startswith("java"):
        return "jvm"
    if "pyspark" in cmd:
        return "python worker"
    return "other"


class PeakMemory:
    """Peak RSS (MiB) per role in this process tree: driver (this process), jvm, python worker,
    zygote, rank; sampled in a thread every `interval` seconds while the `with` block runs."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._roles: dict[int, str] = {}

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="peak-memory")
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        me = psutil.Process()
        self._note("driver", me.memory_info().rss)
        for proc in me.children(recursive=True):
            try:
                if proc.pid not in self._roles:
                    self._roles[proc.pid] = process_role(proc)
                self._note(self._roles[proc.pid], proc.memory_info().rss)
            except psutil.Error:
                continue

    def _note(self, role: str, rss: int) -> None:
        self.peaks[role] = max(self.peaks.get(role, 0.0), rss / MiB)


# --- subprocess tasks -----------------------------------------------------------------------

def run_json(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 1800
             ) -> dict[str, Any]:
    """Run a task script that prints one JSON object as its last stdout line; its stderr's tail
    becomes the error when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    # horovodrun prefixes each line with "[rank]<stdout>:"
    lines = [line[line.index("{"):] for line in proc.stdout.splitlines()
             if "{" in line and line.rstrip().endswith("}")]
    if lines:
        return json.loads(lines[-1])
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
    script = next((os.path.basename(c) for c in cmd if c.endswith(".py")), cmd[0])
    return {"error": f"{script} exited with code {proc.returncode}:\n{tail}"}


def local_task(*args: str, launcher: Sequence[str] = ()) -> dict[str, Any]:
    """Run `bench/local_task.py` in this interpreter's venv, as a fresh process (or processes,
    under `launcher`, e.g. horovodrun)."""
    return run_json([*launcher, sys.executable, os.path.join(BENCH_DIR, "local_task.py"), *args])


# --- results --------------------------------------------------------------------------------

@dataclass
class Row:
    """One line of the results table. `ratio` is ours / limit; `target` (">= 0.9", "<= 8 s")
    bounds `checked` when set, else the ratio."""

    stage: str
    ours: str
    limit: str = ""
    ratio: float | None = None
    target: str = ""
    peer: str = ""
    note: str = ""
    checked: float | None = None  # what the target bounds, when not the ratio (e.g. seconds)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        value = self.ratio if self.checked is None else self.checked
        if value is None or not self.target:
            return ""
        op, bound = self.target.split()[:2]
        ok = value >= float(bound) if op == ">=" else value <= float(bound)
        return "ok" if ok else "MISSED"


def format_table(rows: list[Row]) -> str:
    """A markdown table: stage, ours, limit, ratio, target, verdict, peer."""
    head = ["stage", "sparkdl", "limit", "ratio", "target", "", "horovod.spark.keras"]
    body = [[r.stage, r.ours, r.limit, "" if r.ratio is None else f"{r.ratio:.2f}", r.target,
             r.verdict, r.peer] for r in rows]
    widths = [max(len(str(line[i])) for line in [head, *body]) for i in range(len(head))]
    fmt = "| " + " | ".join(f"{{:{w}}}" for w in widths) + " |"
    lines = [fmt.format(*head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [fmt.format(*line) for line in body]
    notes = [f"- {r.stage}: {r.note}" for r in rows if r.note]
    return "\n".join(lines + ([""] + notes if notes else []))


def rate(n: float, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s" if seconds > 0 else "n/a"


def runs(seconds: Sequence[float]) -> str:
    return ", ".join(f"{s:.2f}" for s in seconds)
