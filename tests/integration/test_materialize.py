"""materialize on local Spark: types and shapes round-trip, validation splits, cache, bad input."""
from __future__ import annotations

import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.functions import array_to_vector
from pyspark.ml.linalg import Vectors
from pyspark.sql import functions as F

from sparkdl.data.materialize import materialize
from sparkdl.data.meta import ColumnSpec, DatasetMeta
from sparkdl.data.schema import inspect_columns
from sparkdl.launch.session import session_of
from sparkdl.store import Store

ROWS = 400


@pytest.fixture()
def store(store_root):
    return Store.create(store_root)


@pytest.fixture(scope="module")
def frame(spark):
    """id, a 2-d vector with ML metadata, a 3-d vector without, arrays and scalars of many types."""
    base = spark.range(ROWS).select(
        "id",
        F.col("id").cast("double").alias("a"),
        (F.col("id") * 2).cast("double").alias("b"),
        array_to_vector(F.array(F.col("id").cast("double"), F.lit(1.0), F.lit(2.0))).alias("raw"),
        F.array(F.col("id").cast("double"), F.lit(0.5)).alias("arr"),
        F.array(F.array(F.col("id").cast("int"), F.lit(1)),
                F.array(F.lit(2), F.lit(3)), F.array(F.lit(4), F.lit(5))).alias("nested"),
        (F.col("id") % 3).cast("short").alias("small"),
        (F.col("id") % 2 == 0).alias("flag"),
        (F.col("id") % 4 == 0).alias("is_val"),
        (F.col("id") % 5).cast("double").alias("label"),
        (F.col("id") % 7).alias("dotted.name"),
    )
    return VectorAssembler(inputCols=["a", "b"], outputCol="vec").transform(base)


def _read_split(path):
    table = pq.read_table(path)
    order = np.argsort(table.column("id").to_numpy())
    return {name: np.array(table.column(name).to_pylist(), dtype=object)[order]
            for name in table.column_names}


def dictionary_encoded(footer: pq.FileMetaData) -> dict[str, bool]:
    """Per top-level column: whether its first row group uses dictionary encoding."""
    group = footer.row_group(0)
    return {group.column(i).path_in_schema.split(".list.")[0]:
            any("DICTIONARY" in e for e in group.column(i).encodings)
            for i in range(group.num_columns)}


def _data_entries(store):
    return store.listdir(store.path("data"))


def test_types_and_shapes_round_trip(frame, store):
    meta = materialize(frame, store, ["vec", "raw", "arr", "nested", "small", "flag"],
                       ["label", "id", "dotted.name"], num_proc=2)
    assert meta.columns == {
        "vec": ColumnSpec("vec", "float32", (2,), "vector"),
        "raw": ColumnSpec("raw", "float32", (3,), "vector"),
        "arr": ColumnSpec("arr", "float32", (2,), "array"),
        "nested": ColumnSpec("nested", "int32", (3, 2), "array"),
        "small": ColumnSpec("small", "int16", (), "scalar"),
        "flag": ColumnSpec("flag", "bool", (), "scalar"),
        "label": ColumnSpec("label", "float32", (), "scalar"),
        "id": ColumnSpec("id", "int64", (), "scalar"),
        "dotted.name": ColumnSpec("dotted.name", "int64", (), "scalar"),
    }
    assert (meta.train_rows, meta.val_path, meta.train.files) == (ROWS, None, 2)
    assert meta.train_bytes == sum(os.path.getsize(os.path.join(meta.train_path, f))
                                   for f in os.listdir(meta.train_path) if f.endswith(".parquet"))
    data = _read_split(meta.train_path)
    ids = np.arange(ROWS)
    assert set(data) == set(meta.columns)
    np.testing.assert_array_equal(np.stack(data["vec"]), np.stack([ids, 2 * ids], axis=1))
    np.testing.assert_array_equal(data["dotted.name"], ids % 7)
    np.testing.assert_array_equal(  # nested arrays are stored flat, row-major
        np.stack(data["nested"]), np.column_stack([ids] + [np.full(ROWS, k) for k in range(1, 6)]))
    schema = pq.ParquetDataset(meta.train_path).schema
    assert schema.field("raw").type.value_type == pa.float32()
    assert schema.field("label").type == pa.float32()
    # float arrays skip the dictionary, whose build per row group would be wasted on them;
    # repeating values elsewhere keep it
    part = next(f for f in os.listdir(meta.train_path) if f.endswith(".parquet"))
    found = dictionary_encoded(pq.read_metadata(os.path.join(meta.train_path, part)))
    assert {name: found[name] for name in ("vec", "raw", "arr", "nested", "small", "label")} == {
        "vec": False, "raw": False, "arr": False, "nested": True, "small": True, "label": True}


def test_float_array_with_a_dotted_name_skips_the_dictionary(frame, store):
    """parquet-mr's per-column options cannot name it: the dictionary is off by default then."""
    meta = materialize(frame.withColumn("dotted.arr", F.col("arr")), store, ["dotted.arr", "arr"],
                       "label", num_proc=1)
    part = next(f for f in os.listdir(meta.train_path) if f.endswith(".parquet"))
    found = dictionary_encoded(pq.read_metadata(os.path.join(meta.train_path, part)))
    assert found == {"dotted.arr": False, "arr": False, "label": True}
    table = pq.read_table(meta.train_path)
    assert table.column("dotted.arr").to_pylist() == table.column("arr").to_pylist()


def test_float_dtype_none_keeps_float64(frame, store):
    meta = materialize(frame, store, ["vec", "arr"], "label", num_proc=1, float_dtype=None)
    assert {c.dtype for c in meta.columns.values()} == {"float64"}


def test_validation_fraction_splits_disjointly(frame, store):
    meta = materialize(frame, store, "vec", "id", validation=0.25, num_proc=2, seed=7)
    train, val = _read_split(meta.train_path)["id"], _read_split(meta.val_path)["id"]
    assert (meta.train_rows, meta.val_rows) == (len(train), len(val))
    assert len(train) + len(val) == ROWS and not set(train) & set(val)
    assert 0.15 * ROWS < len(val) < 0.35 * ROWS


def test_validation_column_is_exact_and_not_written(frame, store):
    meta = materialize(frame, store, "vec", "id", validation="is_val", num_proc=2)
    train, val = _read_split(meta.train_path), _read_split(meta.val_path)
    assert set(val["id"]) == set(range(0, ROWS, 4))
    assert len(train["id"]) == meta.train_rows == ROWS - ROWS // 4
    assert "is_val" not in train and "is_val" not in val


def test_same_plan_is_reused_and_other_plan_is_not(frame, store):
    first = materialize(frame.filter(F.col("id") > 5), store, "vec", "label", num_proc=2)
    meta_file = DatasetMeta.meta_path(store, first.key)
    written = os.stat(meta_file).st_mtime_ns
    again = materialize(frame.filter(F.col("id") > 5), store, "vec", "label", num_proc=2)
    assert again == first and os.stat(meta_file).st_mtime_ns == written
    other = materialize(frame.filter(F.col("id") > 6), store, "vec", "label", num_proc=2)
    assert other.key != first.key and other.train_rows == first.train_rows - 1
    assert sorted(_data_entries(store)) == sorted([first.key, other.key])


def test_context_manager_releases_data(frame, store):
    with materialize(frame, store, "vec", "label", num_proc=1) as meta:
        assert store.exists(meta.train_path)
    assert _data_entries(store) == []


def test_inspect_columns_reports_what_schema_alone_tells(frame):
    specs = inspect_columns(frame, ["vec", "raw", "nested", "label"])
    assert specs["vec"].shape == (2,) and specs["raw"].shape == (None,)
    assert specs["nested"].shape == (None, None) and specs["label"].dtype == "float32"


@pytest.fixture(scope="module")
def bad_frame(spark):
    return spark.createDataFrame(
        [(1, 1.0, "a", {"k": 1}, (1, 2.0), [1.0, 2.0], [1.0], 1.0, True),
         (2, None, "b", {"k": 2}, (3, 4.0), [1.0, 2.0], [1.0, 2.0], None, False)],
        "id long, gap double, s string, m map<string,int>, st struct<i:int,d:double>, "
        "arr array<double>, ragged array<double>, y double, v boolean")


@pytest.mark.parametrize("features, labels, kwargs, message", [
    (["nope"], ["y"], {}, "column 'nope' not found; available columns: id, gap, s"),
    (["arr"], ["s"], {}, "column 's' has type string; expected a numeric or boolean scalar, a "
                         "(nested) array of those, or an ML vector (strings only as features"),
    (["m"], ["id"], {}, "column 'm' has type map<string,int>"),
    (["st"], ["id"], {}, "column 'st' has type struct<i:int,d:double>"),
    (["ragged"], ["id"], {}, "feature column 'ragged' has arrays of sizes 1 to 2"),
    (["gap"], ["id"], {}, "feature column 'gap' has 1 null value"),
    (["arr"], ["y"], {}, "label column 'y' has 1 null value"),
    (["arr"], ["id"], {"sample_weight_col": "y"}, "sample weight column 'y' has 1 null"),
    (["arr"], ["id"], {"validation": 1.5}, "validation 1.5 is invalid"),
    (["arr"], ["id"], {"validation": 1}, "validation 1 is invalid"),
    (["arr"], ["id"], {"validation": "s"}, "validation column 's' has type string"),
    (["arr"], ["id"], {"validation": "nope"}, "validation column 'nope' not found"),
    (["arr"], ["id"], {"validation": "arr"}, "validation column 'arr' is also a feature"),
    (["arr"], ["id"], {"num_proc": 3}, "has 2 rows; expected at least num_proc=3"),
    (["arr"], ["id"], {"num_proc": 0}, "num_proc 0 is invalid"),
    (["arr"], ["id"], {"float_dtype": "float16"}, "float_dtype 'float16' is invalid"),
    ([], ["id"], {}, "feature_cols [] is invalid"),
])
def test_bad_input_fails_before_writing(bad_frame, store, features, labels, kwargs, message):
    kwargs = {"num_proc": 1, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        materialize(bad_frame, store, features, labels, **kwargs)
    assert _data_entries(store) == []


def test_empty_dataframe_fails_before_writing(bad_frame, store):
    with pytest.raises(ValueError, match="DataFrame has no rows"):
        materialize(bad_frame.filter("id < 0"), store, ["arr"], ["id"], num_proc=1)
    assert _data_entries(store) == []


def test_null_array_elements_and_all_train_validation_are_rejected(spark, store):
    frame = spark.createDataFrame([([1.0, None], 1, 0), ([1.0, 2.0], 2, 0)],
                                  "arr array<double>, id long, fold int")
    with pytest.raises(ValueError, match="feature column 'arr' has null array elements in 1 row"):
        materialize(frame, store, "arr", "id", num_proc=1)
    with pytest.raises(ValueError, match="validation column 'fold' marks 0 of 1 rows"):
        materialize(frame.filter("id = 2"), store, "arr", "id", validation="fold", num_proc=1)
    assert _data_entries(store) == []


def test_null_vectors_are_counted_as_nulls(spark, store):
    frame = spark.createDataFrame([(Vectors.dense([1.0, 2.0]), 1.0), (None, 2.0)], ["v", "y"])
    with pytest.raises(ValueError, match=r"feature column 'v' has 1 null value\(s\) in 2 rows"):
        materialize(frame, store, "v", "y", num_proc=1)
    assert _data_entries(store) == []


def test_rewritten_input_files_are_materialized_again(spark, store, tmp_path):
    source = str(tmp_path / "source")

    def write(rows, mode):
        (spark.range(rows).selectExpr("cast(id as double) as a", "cast(id % 2 as double) as label")
         .write.mode(mode).parquet(source))

    write(100, "error")
    first = materialize(spark.read.parquet(source), store, "a", "label", num_proc=2)
    again = materialize(spark.read.parquet(source), store, "a", "label", num_proc=2)
    assert again.key == first.key and first.reuse == "app"  # unchanged files: reused
    write(300, "overwrite")  # same path, same plan, new files
    second = materialize(spark.read.parquet(source), store, "a", "label", num_proc=2)
    assert second.key != first.key and second.train_rows == 300


def test_spark_connect_sees_the_input_files_sizes_and_times_as_classic_does(spark, connect,
                                                                           tmp_path):
    # what the resume fingerprint compares: on Connect from a Spark job, on classic from Hadoop
    source = str(tmp_path / "source")
    spark.range(100).write.parquet(source)

    def stats(session):
        files = session_of(session).input_files(session.read.parquet(source))
        return sorted((os.path.basename(path), size, mtime) for path, size, mtime in files)

    assert stats(connect) == stats(spark) and all(size > 0 for _, size, _ in stats(spark))


def test_non_deterministic_plans_are_not_reused_unless_a_cache_key_is_given(frame, store):
    sampled = frame.filter(F.rand(1) < 0.5)
    first = materialize(sampled, store, "vec", "label", num_proc=2)
    second = materialize(sampled, store, "vec", "label", num_proc=2)
    assert first.reuse == second.reuse == "once" and first.key != second.key
    keyed = materialize(sampled, store, "vec", "label", num_proc=2, cache_key="my-sample")
    assert keyed.reuse == "key"
    assert materialize(sampled, store, "vec", "label", num_proc=2,
                       cache_key="my-sample") == keyed


def test_data_another_application_wrote_meanwhile_under_the_cache_key_is_kept(frame, store):
    first = materialize(frame, store, "vec", "label", num_proc=2, cache_key="shared")
    final = store.local_path(store.data_dir(first.key))
    aside = final + ".other-application"
    os.rename(final, aside)  # as if the key were not written yet when this fit looked
    train = os.path.relpath(store.local_path(first.train_path), final)
    files = sorted(os.listdir(os.path.join(aside, train)))

    def other_application_finishes(columns):  # between this fit's look and its write
        os.rename(aside, final)

    again = materialize(frame, store, "vec", "label", num_proc=2, cache_key="shared",
                        check=other_application_finishes)
    assert again == first
    assert sorted(os.listdir(os.path.join(final, train))) == files  # its files, not this fit's
    assert len(os.listdir(final)) == 2  # its metadata and directory: this fit's write is gone
    assert sorted(os.listdir(os.path.dirname(final))) == [first.key]  # no temporary left


def _last_job_stages(spark, group: str) -> int:
    tracker = spark.sparkContext.statusTracker()
    return len(tracker.getJobInfo(max(tracker.getJobIdsForGroup(group))).stageIds)


def test_enough_partitions_are_merged_without_a_shuffle_keeping_num_proc_files(spark, store):
    df = spark.range(0, 400, numPartitions=8).select(
        F.col("id").cast("double").alias("x"), (F.col("id") < 30).alias("is_val"))
    spark.sparkContext.setJobGroup("sparkdl-merge-test", "materialize 8 partitions")
    try:
        merged = materialize(df, store, "x", "x", num_proc=2)
        write_stages = _last_job_stages(spark, "sparkdl-merge-test")
        # the validation rows all sit in the first partition: merged, one file would hold them
        # all, so that split is written again round-robin to give each rank a file
        split = materialize(df, store, "x", "x", validation="is_val", num_proc=2)
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    assert write_stages == 1  # no shuffle stage before the write
    assert (merged.train.files, merged.train_rows) == (2, 400)
    assert (split.train.files, split.val.files) == (2, 2)
    assert sorted(pq.read_table(split.val_path).column("x").to_pylist()) == list(range(30))
    assert split.train_rows == 370


def test_few_big_partitions_are_cut_into_files_without_a_shuffle(spark, store, monkeypatch):
    import sparkdl.data.materialize as mat

    monkeypatch.setattr(mat, "MAX_FILE_BYTES", 400)  # 100 rows of one float32 per file
    df = spark.range(0, 400, numPartitions=2).select(F.col("id").cast("double").alias("x"))
    spark.sparkContext.setJobGroup("sparkdl-cut-test", "materialize 2 partitions")
    try:
        meta = materialize(df, store, "x", "x", num_proc=2)
        write_stages = _last_job_stages(spark, "sparkdl-cut-test")
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    assert write_stages == 1  # 2 partitions keep local[2] busy: no round-robin shuffle
    assert (meta.train.files, meta.train_rows) == (4, 400)
    assert sorted(pq.read_table(meta.train_path).column("x").to_pylist()) == list(range(400))


def test_what_a_killed_driver_left_is_swept_at_the_next_materialize(spark, store_root):
    """Data keyed to an application is released at its exit; a driver killed before (SIGKILL,
    a kernel restart) left its data and temporary directories, which nothing removed."""
    import dataclasses
    import time

    import sparkdl.data.materialize as materialize_module

    store = Store.create(store_root)
    day = 24 * 3600
    written = materialize(spark.range(40).selectExpr("cast(id as float) as x", "id as y"),
                          store, "x", "y", num_proc=2, cache_key="kept-by-key")
    old = time.time() - 8 * day
    left = {  # name -> (app, written_at, reuse), as another application's driver wrote them
        "ds-" + "a" * 24: ("app-killed", old, "app"),  # dead and old: swept
        "ds-" + "b" * 24: ("app-recent", time.time(), "app"),  # maybe still in use: kept
        "ds-" + "c" * 24: (None, old, "key"),  # a user's cache_key: kept until released
    }
    for key, (app, at, reuse) in left.items():
        train = f"{store.data_dir(key)}/write-{int(at)}-0c0c/train"
        store.write_bytes(f"{train}/part-0.parquet", b"rows")
        dataclasses.replace(written, key=key, app=app, written_at=at, reuse=reuse,
                            train=dataclasses.replace(written.train, path=train)).save()
    # writes' own directories: failed (no metadata names them), or going on now
    stale_tmp = f"ds-{'d' * 24}/write-{int(time.time() - 2 * day)}-0a1b"
    lost_race = f"{written.key}/write-{int(time.time() - 2 * day)}-0a1b"
    fresh_tmp = f"ds-{'e' * 24}/write-{int(time.time())}-0a1b"
    for name in (stale_tmp, lost_race, fresh_tmp):
        store.write_bytes(store.path("data", name, "train", "part-0.parquet"), b"half")
    materialize_module._swept.clear()

    materialize(spark.range(40).selectExpr("cast(id as float) as x", "id as y"), store, "x", "y",
                num_proc=2, cache_key="a-new-one")
    names = set(store.listdir(store.path("data")))
    assert "ds-" + "a" * 24 not in names
    assert {"ds-" + "b" * 24, "ds-" + "c" * 24, written.key} <= names
    assert not store.exists(store.path("data", stale_tmp))
    assert not store.exists(store.path("data", lost_race))
    assert store.exists(store.path("data", fresh_tmp))
    assert store.exists(DatasetMeta.load(store, "ds-" + "c" * 24).train_path)  # old, published
    assert len(pq.read_table(written.train_path)) == 40


def test_an_application_publishing_the_same_cache_key_meanwhile_keeps_its_own_rows(
        spark, store_root, monkeypatch):
    """Another application writes and publishes the key right after this one checked that it
    was free: each must go on reading complete data of its own, never the other's or a mix."""
    import threading

    import sparkdl.data.materialize as materialize_module

    store = Store.create(store_root)
    ones = spark.range(40).selectExpr("cast(1 as float) as x", "id as y")
    twos = spark.range(40).selectExpr("cast(2 as float) as x", "id as y")
    monkeypatch.setattr(materialize_module, "_lock_for", lambda key: threading.Lock())  # 2 apps
    real_load, checks, other = DatasetMeta.load, [], []

    def load(cls, store_, key):
        found = real_load(store_, key)
        checks.append(key)
        if len(checks) == 2:  # this writer's last check: the other application publishes now
            other.append(materialize(twos, store, "x", "y", num_proc=2, cache_key="shared"))
        return found

    monkeypatch.setattr(DatasetMeta, "load", classmethod(load))
    mine = materialize(ones, store, "x", "y", num_proc=2, cache_key="shared")
    monkeypatch.setattr(DatasetMeta, "load", real_load)

    def values(meta):
        return pq.read_table(meta.train_path).column("x").to_pylist()

    assert values(mine) == [1.0] * 40
    assert values(other[0]) == [2.0] * 40
    assert set(values(DatasetMeta.load(store, mine.key))) in ({1.0}, {2.0})
