"""DatasetMeta: JSON and pickle round trips, loading from a store, release."""
from __future__ import annotations

import pickle

import cloudpickle

from sparkdl.data.meta import ColumnSpec, DatasetMeta, SplitInfo
from sparkdl.store import Store


def _meta(store=None):
    return DatasetMeta(
        key="ds-1", feature_cols=["x", "v"], label_cols=["y"], sample_weight_col=None,
        columns={"x": ColumnSpec("x", "float32", (2, 3), "array"),
                 "v": ColumnSpec("v", "float32", (4,), "vector"),
                 "y": ColumnSpec("y", "int64", (), "scalar")},
        train=SplitInfo(path="/s/data/ds-1/train", rows=8, bytes=100, files=2, row_groups=2),
        val=None, store=store)


def test_json_round_trip_restores_tuples_and_splits():
    meta = _meta()
    back = DatasetMeta.from_json(meta.to_json())
    assert back == meta
    assert back.columns["x"].shape == (2, 3)
    assert back.train_path == "/s/data/ds-1/train" and back.val_path is None
    assert (back.train_rows, back.val_rows, back.val_bytes) == (8, 0, 0)


def test_row_bytes():
    assert ColumnSpec("x", "float32", (2, 3), "array").row_bytes == 24
    assert ColumnSpec("y", "int64", (), "scalar").row_bytes == 8


def test_pickles_with_its_store(store_root):
    meta = _meta(Store.create(store_root))
    for dump, load in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        back = load(dump(meta))
        assert back == meta and back.store == meta.store


def test_load_release_and_context_manager(store_root):
    store = Store.create(store_root)
    assert DatasetMeta.load(store, "ds-1") is None
    store.write_bytes(store.path("data", "ds-1", "train", "part.parquet"), b"")
    meta = _meta(store)
    meta.save()
    with DatasetMeta.load(store, "ds-1") as loaded:
        assert loaded == meta
    assert not store.exists(store.data_dir("ds-1"))
