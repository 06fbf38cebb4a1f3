"""A Store on s3:// against a real S3-API server (moto's, on 127.0.0.1): materialize, training
checkpoints, resume and atomic writes, with Spark holding no S3 connector or credentials."""
from __future__ import annotations

import pytest
from keras_helpers import accuracy, assembled_df, make_estimator

from sparkdl import Store
from sparkdl.data.materialize import _write_with_fsspec
from sparkdl.data.meta import ColumnSpec, DatasetMeta


def _s3_store(options, name):
    return Store.create(f"s3://sparkdl/{name}", storage_options=options)


def test_s3_store_writes_whole_objects_or_nothing_and_deletes_only_its_areas(s3_options,
                                                                             tmp_path):
    store = _s3_store(s3_options, "ops")
    path = store.path("runs", "r", "fingerprint.json")
    store.write_bytes(path, b"first")
    store.write_bytes(path, b"second")
    assert store.read_bytes(path) == b"second"
    with pytest.raises(TypeError):
        store.write_bytes(path, "not bytes")  # fails mid-write
    assert store.read_bytes(path) == b"second"
    assert store.listdir(store.run_dir("r")) == ["fingerprint.json"]  # no temporary left

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"w" * 1000)
    store.put_dir(str(tmp_path / "model"), store.model_dir("m"))
    store.get_dir(store.model_dir("m"), str(tmp_path / "back"))
    assert (tmp_path / "back" / "weights.bin").read_bytes() == b"w" * 1000
    assert store.listdir(store.path("models")) == ["m"]

    with pytest.raises(ValueError, match="refusing to delete"):
        store.delete(store.root)
    store.delete(store.run_dir("r"))
    assert not store.exists(path) and store.exists(store.model_dir("m"))


def test_fit_on_an_s3_store_materializes_checkpoints_and_resumes_there(spark, s3_options):
    store = _s3_store(s3_options, "fit")
    df = assembled_df(spark, rows=1200)
    # cache_key: the data stays until released, not released at exit (when the server is gone)
    est = make_estimator("/unused", store=store, run_id="s3-run", batch_size=64, epochs=3,
                         random_seed=3, verbose=0, validation=0.2, cache_key="s3-fit")
    fitted = est.fit(df)
    assert fitted.getHistory()["epoch"] == [1, 2, 3]
    assert accuracy(fitted.transform(df)) > 0.85

    # the executors wrote the data through fsspec: only complete Parquet parts, no temporaries
    fs = store._filesystem()
    (data_key,) = store.listdir(store.path("data"))
    meta = DatasetMeta.load(store, data_key)
    for split in (meta.train_path, meta.val_path):
        parts = store.listdir(split)
        assert len(parts) >= 2 and all(p.endswith(".parquet") for p in parts), parts
    assert not [p for p in fs.find(store.root) if "/." in p]  # nothing hidden or half-written
    assert store.listdir(store.checkpoint_dir("s3-run"))[-1] == "epoch-00003.ckpt"

    # the same run goes on from its last checkpoint in S3
    resumed = make_estimator("/unused", store=store, run_id="s3-run", batch_size=64, epochs=4,
                             random_seed=3, verbose=0, validation=0.2,
                             cache_key="s3-fit").fit(df)
    assert resumed.getHistory()["epoch"] == [4]
    assert resumed.getRunHistory()["epoch"] == [1, 2, 3, 4]


def test_s3_parts_that_no_successful_task_reported_are_removed(spark, s3_options):
    """What a failed task attempt left (here: a part file put there before the write) is not
    data: only the parts the successful tasks report stay."""
    store = _s3_store(s3_options, "attempts")
    tmp = store.path("data", ".ds-x.tmp-1")
    store.write_bytes(f"{tmp}/train/part-failed-attempt-0.parquet", b"half an upload")
    rows = spark.range(40).selectExpr("cast(id as float) as x").repartition(2)
    _write_with_fsspec(rows, store, tmp, [ColumnSpec("x", "float32", (), "scalar")], None, 100)
    parts = store.listdir(f"{tmp}/train")
    assert len(parts) == 2 and "part-failed-attempt-0.parquet" not in parts


def _saved_bytes(path):
    """Every byte a save wrote, Parquet pages decompressed (the blobs' values) and files raw."""
    import os

    import pyarrow.parquet as pq

    found = b""
    for folder, _, files in os.walk(path):
        for name in files:
            file = os.path.join(folder, name)
            found += open(file, "rb").read()
            if name.endswith(".parquet"):
                found += b"".join(bytes(v) for v in pq.read_table(file).column("data").to_pylist())
    return found


def test_a_saved_estimator_holds_no_store_credentials(spark, s3_options, tmp_path):
    from pyspark.ml import Pipeline

    from sparkdl import KerasEstimator

    options = {**s3_options, "secret": "s3cr3t-never-saved"}
    # cache_key: the data stays until released, not released at exit (when the server is gone)
    est = make_estimator("/unused", store=_s3_store(options, "creds"), epochs=1,
                         cache_key="creds")
    Pipeline(stages=[est]).write().save(str(tmp_path / "pipeline"))
    est.write().save(str(tmp_path / "est"))
    for saved in ("pipeline", "est"):
        assert b"s3cr3t-never-saved" not in _saved_bytes(str(tmp_path / saved))

    loaded = KerasEstimator.load(str(tmp_path / "est"))
    assert loaded.getStore().url == est.getStore().url
    assert loaded.getStore().storage_options == {}
    with pytest.raises(ValueError, match=r"never keeps storage_options \(this one had "
                                         r"client_kwargs, endpoint_url, key, secret\)"):
        loaded.fit(assembled_df(spark, rows=100))
    loaded.setStore(_s3_store(options, "creds"))  # the user's credentials, given again
    assert loaded.fit(assembled_df(spark, rows=400)).getHistory()["epoch"] == [1]
