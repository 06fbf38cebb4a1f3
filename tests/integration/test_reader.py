"""open_shard_dataset on materialized data: balanced shards, epochs, structure, cleanup."""
from __future__ import annotations

import dataclasses
import gc
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from pyspark.ml.functions import array_to_vector
from pyspark.sql import functions as F

from sparkdl.data.materialize import materialize
from sparkdl.data.reader import ROW_GROUPS_AHEAD, _ShardReader, open_dataset, open_shard_dataset
from sparkdl.data.sharding import steps_per_epoch
from sparkdl.store import Store

ROWS = 2000


@pytest.fixture(scope="module")
def written(spark, tmp_path_factory):
    """4 files (num_proc=4): features derived from the id label, so alignment can be checked."""
    store = Store.create(str(tmp_path_factory.mktemp("reader") / "store"))
    frame = spark.range(ROWS).select(
        array_to_vector(F.array(F.col("id").cast("double"), -F.col("id").cast("double")))
        .alias("vec"),
        F.array(F.col("id").cast("int"), F.col("id").cast("int") + 1).alias("arr"),
        F.col("id"),
        (F.col("id") * 0.5).alias("w"),
    )
    meta = materialize(frame, store, ["vec", "arr"], "id", sample_weight_col="w", num_proc=4)
    return store.dataset_url(meta.train_path), meta


def _ids_checked(batches):
    """Concatenated ids of (features, labels, weights) batches, checking every row is aligned."""
    ids = []
    for (vec, arr), labels, weights in batches:
        labels = labels.numpy()
        np.testing.assert_array_equal(vec.numpy(), np.stack([labels, -labels], axis=1))
        np.testing.assert_array_equal(arr.numpy()[:, 1], labels + 1)
        np.testing.assert_array_equal(weights.numpy(), labels * 0.5)
        ids.append(labels)
    return np.concatenate(ids)


@pytest.mark.parametrize("size", [2, 3, 4])
def test_shards_are_balanced_by_rows_and_cover_every_row_once(written, size):
    url, meta = written
    shards = [list(open_shard_dataset(url, rank, size, 64, meta=meta, num_epochs=1, seed=5))
              for rank in range(size)]
    rows = [sum(len(labels) for _, labels, _ in batches) for batches in shards]
    assert max(rows) - min(rows) <= 1  # 2000 rows in 3 shards: 666, 667, 667
    steps = steps_per_epoch(ROWS, 64, size)
    assert [len(batches) for batches in shards] == [steps] * size
    assert all(len(labels) == 64 for batches in shards for _, labels, _ in batches[:-1])
    assert sorted(_ids_checked(b for batches in shards for b in batches)) == list(range(ROWS))


def test_infinite_repeat_gives_each_epoch_in_the_same_batches(written):
    url, meta = written
    shard = sorted(_ids_checked(open_shard_dataset(url, 1, 2, 64, meta=meta, num_epochs=1)))
    batch = 48
    steps = steps_per_epoch(ROWS, batch, 2)  # 1000 rows: 20 batches of 48, then 40
    batches = [b[1].numpy() for b in open_shard_dataset(url, 1, 2, batch, meta=meta, seed=3)
               .take(2 * steps)]
    assert [len(b) for b in batches] == ([batch] * (steps - 1) + [40]) * 2
    first, second = np.concatenate(batches[:steps]), np.concatenate(batches[steps:])
    assert sorted(first) == shard and sorted(second) == shard
    assert list(first) != list(second)  # reshuffled per epoch


def test_structure_follows_the_columns(written):
    url, meta = written
    single = dataclasses.replace(meta, feature_cols=["vec"], sample_weight_col=None)
    features, labels = next(iter(open_shard_dataset(url, 0, 1, 10, meta=single)))
    assert (features.shape, features.dtype) == ((10, 2), tf.float32)
    assert (labels.shape, labels.dtype) == ((10,), tf.int64)
    (vec, arr), _, weights = next(iter(open_shard_dataset(url, 0, 1, 10, meta=meta)))
    assert (arr.dtype, weights.dtype) == (tf.int32, tf.float32)


def test_open_dataset_reads_every_row_once_with_a_short_last_batch(written):
    url, meta = written
    batches = list(open_dataset(url, 300, meta=meta))
    assert [len(b[1]) for b in batches] == [300] * 6 + [200]
    assert sorted(_ids_checked(batches)) == list(range(ROWS))


def _python_threads() -> set[threading.Thread]:
    """Threads started from Python (the reader's among them), by identity: a count also moves
    when one of Spark's ends, or when one of TensorFlow's pool threads first runs Python."""
    return {t for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}


def test_dropping_an_infinite_iterator_stops_reader_threads(written):
    url, meta = written
    before = _python_threads()
    iterator = iter(open_shard_dataset(url, 0, 2, 16, meta=meta, workers=3))
    for _ in range(5):
        next(iterator)
    assert _python_threads() - before
    del iterator
    deadline = time.monotonic() + 10
    while _python_threads() - before and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert not _python_threads() - before


def test_datasets_run_without_the_autotuning_thread(written):
    """Deleting an exhausted iterator (Keras drops the validation one every epoch) waited for
    tf.data's autotuning thread to wake: 2.0-2.4 s after a 3 s pass at 1M rows."""
    url, meta = written
    assert open_shard_dataset(url, 0, 1, 16, meta=meta).options().autotune.enabled is False
    assert open_dataset(url, 16, meta=meta).options().autotune.enabled is False


def test_row_groups_in_flight_stay_bounded(tmp_path, monkeypatch):
    """With a slow consumer, workers read ahead at most ROW_GROUPS_AHEAD row groups beyond one
    each: the reader's memory is bounded by that, not by the shard's size."""
    table = pa.table({"x": np.arange(400, dtype=np.float32)})
    pq.write_table(table, tmp_path / "part-0.parquet", row_group_size=10)  # 40 row groups
    started = []
    read = _ShardReader._read

    def counted(self, *piece):
        started.append(piece)
        return read(self, *piece)

    monkeypatch.setattr(_ShardReader, "_read", counted)
    reader = _ShardReader(f"file://{tmp_path}", 0, 1, ["x"], shuffle=False, seed=None,
                          workers=2, storage_options=None)
    in_flight, values = [], []
    try:
        for consumed, chunk in enumerate(reader, start=1):
            time.sleep(0.005)
            in_flight.append(len(started) - consumed)
            values.append(chunk.column("x").to_numpy())
    finally:
        reader.close()
    assert len(in_flight) == 40
    assert max(in_flight) <= 2 + ROW_GROUPS_AHEAD
    np.testing.assert_array_equal(np.concatenate(values), np.arange(400))  # file order


def test_a_shuffled_epoch_reads_every_row_group_once_in_a_new_order(tmp_path):
    table = pa.table({"x": np.arange(400, dtype=np.int64)})
    pq.write_table(table, tmp_path / "part-0.parquet", row_group_size=10)
    reader = _ShardReader(str(tmp_path), 1, 2, ["x"], shuffle=True, seed=7, workers=3,
                          storage_options=None)
    try:
        epochs = [[chunk.column("x")[0].as_py() for chunk in reader] for _ in range(2)]
    finally:
        reader.close()
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(200, 400, 10))
    assert epochs[0] != epochs[1]


def test_a_split_without_part_files_fails_naming_the_path(tmp_path):
    (tmp_path / "_SUCCESS").touch()
    with pytest.raises(FileNotFoundError, match="no Parquet part files in"):
        _ShardReader(str(tmp_path), 0, 1, ["x"], shuffle=False, seed=None, workers=1,
                     storage_options=None)


@pytest.mark.parametrize("kwargs, message", [
    ({"rank": 2, "size": 2}, "rank 2 is invalid; expected an int in [0, 2)"),
    ({"rank": 0, "size": 2001}, "a split of 2000 row(s) cannot give each of 2001 processes"),
    ({"rank": 0, "size": 1, "batch_size": 0}, "batch_size 0 is invalid"),
])
def test_bad_arguments_fail_before_reading(written, kwargs, message):
    url, meta = written
    kwargs = {"batch_size": 8, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        open_shard_dataset(url, kwargs["rank"], kwargs["size"], kwargs["batch_size"], meta=meta)


_FAULTS_SCRIPT = """
import resource, sys
import numpy as np, tensorflow as tf
from sparkdl.data.meta import DatasetMeta
from sparkdl.data.reader import open_shard_dataset
from sparkdl.store import Store

def faults_of_big_arrays():
    np.ones(2 << 20, np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        np.ones(2 << 20, np.float32)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

for _ in tf.data.Dataset.from_generator(lambda: iter([0]), output_types=tf.int64):
    pass
after_tensorflow = faults_of_big_arrays()
store = Store.create(sys.argv[1])
meta = DatasetMeta.load(store, sys.argv[2])
for _ in open_shard_dataset(store.dataset_url(meta.train_path), 0, 2, 64, meta=meta,
                            num_epochs=1):
    pass
print(after_tensorflow, faults_of_big_arrays())
"""


def test_reading_leaves_big_allocations_served_from_freed_memory(written):
    # The first generator dataset a process iterates pins glibc's mmap threshold at 128 KiB
    # (TensorFlow's guard against RSS growth): every 8 MiB array is then fresh memory, faulted
    # in page by page. The reader lifts that for the rank's blocks, batches and model steps.
    _, meta = written
    out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT, meta.store.root, meta.key],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    after_tensorflow, after_reader = map(int, out.stdout.split())
    assert after_reader * 10 < after_tensorflow, (after_reader, after_tensorflow)
