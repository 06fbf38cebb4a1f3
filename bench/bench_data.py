"""Data-path throughput: materialize vs a plain Parquet write, and the shard reader vs pyarrow
(numbers, and a string column).

Both writers read the same cached DataFrame, so the figures compare write paths, not data
generation. Run: ``.venv/bin/python bench/bench_data.py --rows 200000``.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkdl.data.materialize import materialize
from sparkdl.data.meta import DatasetMeta, bytes_per_row
from sparkdl.data.reader import (
    DEFAULT_WORKERS,
    SHUFFLE_BUFFER_BYTES,
    _shard_blocks,
    open_shard_dataset,
)
from sparkdl.store import Store

WORDS = ["the", "kettle", "arrived", "quickly", "and", "works", "perfectly", "broke", "after",
         "a", "week", "refund", "please", "five", "stars", "flimsy"]


def main() -> None:
    args = _parse_args()
    spark = (SparkSession.builder.master(args.master).appName("bench_data")
             .config("spark.ui.enabled", "false").config("spark.driver.memory", "6g")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    source = _cached(spark.range(args.rows).select(
        array_to_vector(F.array(*[F.rand(i) for i in range(args.dim)])).alias("features"),
        (F.col("id") % 10).cast("double").alias("label")))
    converted = _cached(source.select(vector_to_array("features", "float32").alias("features"),
                                      F.col("label").cast("float").alias("label")))
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        store = Store.create(os.path.join(tmp, "store"))
        meta = _bench_writes(args, source, converted, store, os.path.join(tmp, "plain"))
        _bench_reads(args, store, meta)
        _bench_string_reads(args, spark, store)
    spark.stop()


def _bench_writes(args: argparse.Namespace, source: DataFrame, converted: DataFrame,
                  store: Store, plain_dir: str) -> DatasetMeta:
    """Time materialize (released after each run, so none is a cache hit) and a plain write."""
    def run_materialize() -> DatasetMeta:
        return materialize(source, store, "features", "label", num_proc=args.num_proc)

    def run_plain() -> None:
        converted.write.mode("overwrite").parquet("file://" + plain_dir)

    run_materialize().release()  # warm-up: JIT, Python workers
    run_plain()
    materialize_s, plain_s = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        meta = run_materialize()
        materialize_s.append(time.perf_counter() - start)
        meta.release()
        plain_s.append(_timed(run_plain))
    _report("write", "materialize", args.rows, materialize_s, "plain df.write.parquet", plain_s)
    return run_materialize()


def _bench_reads(args: argparse.Namespace, store: Store, meta: DatasetMeta) -> None:
    """Time one pass over the written train split: the shard reader vs pyarrow into numpy.

    Also, to show where the reader's time goes: its numpy blocks before tf.data, and tf.data
    alone on the same rows already in memory (what any numpy input to Keras pays)."""
    import tensorflow as tf

    url, files = store.dataset_url(meta.train_path), _parquet_files(meta.train_path)
    columns = [meta.columns[name] for name in ("features", "label")]

    def count(dataset: tf.data.Dataset) -> None:
        _count(dataset, args.rows)

    def run_blocks(shuffle: bool) -> None:
        rows = sum(labels.size for _, labels in _shard_blocks(
            url, 0, 1, args.batch_size, columns, shuffle=shuffle, seed=None, num_epochs=1,
            window_rows=window, workers=DEFAULT_WORKERS, storage_options=None))
        assert rows == args.rows, rows

    per_file = _read_with_pyarrow(files, args.dim)
    in_memory = tuple(np.concatenate(parts) for parts in zip(*per_file, strict=True))
    window = max(args.batch_size, SHUFFLE_BUFFER_BYTES // bytes_per_row(columns))
    plain = ("pyarrow -> numpy", lambda: _read_with_pyarrow(files, args.dim))
    # Like for like with shuffle=True: what a user does to get shuffled numpy (all rows in memory,
    # one permutation over them, gathered with np.take).
    shuffled = ("pyarrow -> numpy, shuffled",
                lambda: _shuffled(_read_with_pyarrow(files, args.dim)))

    def read(shuffle: bool) -> None:
        count(open_shard_dataset(url, 0, 1, args.batch_size, meta=meta, shuffle=shuffle,
                                 num_epochs=1))

    candidates = {
        "shuffle=False": (lambda: read(False), plain),
        "shuffle=True": (lambda: read(True), plain),
        "shuffle=True, limit shuffled too": (lambda: read(True), shuffled),
        "numpy blocks, shuffle=False": (lambda: run_blocks(False), plain),
        "numpy blocks, shuffle=True": (lambda: run_blocks(True), plain),
        "tf.data on in-memory numpy": (lambda: count(
            tf.data.Dataset.from_tensor_slices(in_memory).batch(args.batch_size)), plain),
    }
    for what, (run, (baseline, run_baseline)) in candidates.items():
        name = "from_tensor_slices" if what.startswith("tf.data") else "open_shard_dataset"
        _compare(f"read ({what}, batch {args.batch_size})", name, args.rows, run, baseline,
                 run_baseline, args.repeat)


def _bench_string_reads(args: argparse.Namespace, spark: SparkSession, store: Store) -> None:
    """One pass of the reader over a string column (8 words, about 50 bytes a row) and a label,
    against pyarrow -> numpy (object arrays of str) of the same files."""
    rows = args.rows // 4
    words = F.array(*[F.lit(w) for w in WORDS])
    text = F.concat_ws(" ", *[F.element_at(words, (F.rand(i) * len(WORDS)).cast("int") + 1)
                              for i in range(8)])
    df = _cached(spark.range(rows).select(text.alias("text"),
                                          (F.col("id") % 2).cast("double").alias("label")))
    meta = materialize(df, store, "text", "label", num_proc=args.num_proc)
    url, files = store.dataset_url(meta.train_path), _parquet_files(meta.train_path)

    def arrow() -> None:
        for path in files:
            table = pq.read_table(path)
            table.column("text").to_numpy(), table.column("label").to_numpy()

    for shuffle in (False, True):
        _compare(f"read (string column, shuffle={shuffle}, batch {args.batch_size})",
                 "open_shard_dataset", rows,
                 lambda shuffle=shuffle: _count(open_shard_dataset(
                     url, 0, 1, args.batch_size, meta=meta, shuffle=shuffle, num_epochs=1), rows),
                 "pyarrow -> numpy (str objects)", arrow, args.repeat)
    meta.release()
    df.unpersist()


def _count(dataset: Any, rows: int) -> None:
    """Run a pass of `dataset`, checking that it holds `rows` rows."""
    import tensorflow as tf

    counted = dataset.reduce(tf.constant(0, tf.int64),
                             lambda n, batch: n + tf.shape(batch[1], tf.int64)[0])
    assert int(counted) == rows, int(counted)


def _compare(what: str, name: str, rows: int, run: Callable[[], object], baseline: str,
             run_baseline: Callable[[], object], repeat: int) -> None:
    """A warm-up pass (function tracing, page cache), then `repeat` of each, interleaved."""
    run()
    ours, theirs = [], []
    for _ in range(repeat):
        theirs.append(_timed(run_baseline))
        ours.append(_timed(run))
    _report(what, name, rows, ours, baseline, theirs)


def _read_with_pyarrow(files: list[str], dim: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each file's features and labels as numpy: the limit."""
    arrays = []
    for path in files:
        table = pq.read_table(path)
        features = table.column("features").combine_chunks().flatten().to_numpy()
        arrays.append((features.reshape(-1, dim), table.column("label").to_numpy()))
    return arrays


def _shuffled(per_file: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    columns = [np.concatenate(parts) for parts in zip(*per_file, strict=True)]
    order = np.random.default_rng().permutation(len(columns[0]))
    return tuple(np.take(column, order, axis=0) for column in columns)


def _cached(df: DataFrame) -> DataFrame:
    df = df.cache()
    df.count()
    return df


def _parquet_files(folder: str) -> list[str]:
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.endswith(".parquet"))


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _report(what: str, name: str, rows: int, seconds: list[float], baseline: str,
            baseline_seconds: list[float]) -> None:
    """Median rows/s and ratio; best-of too, since shared machines add noise to single runs."""
    for stat, pick in (("median", statistics.median), ("best", min)):
        ours, theirs = rows / pick(seconds), rows / pick(baseline_seconds)
        print(f"{what} [{stat} of {len(seconds)}]: {name} {ours:,.0f} rows/s, "
              f"{baseline} {theirs:,.0f} rows/s, ratio {ours / theirs:.2f}")
    print(f"  runs (s): {' '.join(f'{s:.2f}' for s in seconds)} vs "
          f"{' '.join(f'{s:.2f}' for s in baseline_seconds)}", flush=True)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--num-proc", type=int, default=2, help="shards materialize prepares for")
    parser.add_argument("--master", default="local[*]")
    return parser.parse_args()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
