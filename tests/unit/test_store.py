"""Store: URL handling, layout, atomic writes, pickling and the delete guard (no Spark)."""
from __future__ import annotations

import os
import pickle
import uuid

import cloudpickle
import pytest

from sparkdl.store import Store


@pytest.fixture()
def store(store_root):
    return Store.create(store_root)


@pytest.fixture()
def memory_store():
    store = Store.create(f"memory://sparkdl-test-{uuid.uuid4().hex}")
    yield store
    store._filesystem().rm(store.root, recursive=True)


def test_plain_path_and_file_url_are_the_same_store(store_root):
    plain = Store.create(store_root)
    for url in (f"file://{store_root}", f"file:{store_root}", f"file://localhost{store_root}/"):
        assert Store.create(url) == plain
    assert plain.url == f"file://{store_root}"
    assert plain.data_dir("k") == f"{store_root}/data/k"


def test_relative_path_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Store.create("rel/store").root == str(tmp_path / "rel" / "store")


def test_layout(store):
    root = store.root
    assert store.run_dir("r1") == f"{root}/runs/r1"
    assert store.checkpoint_dir("r1") == f"{root}/runs/r1/checkpoints"
    assert store.logs_dir("r1") == f"{root}/runs/r1/logs"
    assert store.model_dir("m") == f"{root}/models/m"
    assert store.path("a", "b/c") == f"{root}/a/b/c"


@pytest.mark.parametrize("part", ["", "..", "a/../b", None])
def test_path_rejects_bad_parts(store, part):
    with pytest.raises(ValueError, match="store path part"):
        store.path("data", part)


def test_local_urls(store):
    path = store.data_dir("k")
    assert store.spark_url(path) == f"file://{path}"
    assert store.dataset_url(path) == f"file://{path}"
    assert store.local_path(path) == path
    assert store.local_path(f"file://{path}") == path


@pytest.mark.parametrize("url", ["dbfs:/ml/store", "dbfs:///ml/store/"])
def test_dbfs_maps_to_fuse_path(url):
    store = Store.create(url)
    assert store.url == "dbfs:/ml/store"
    path = store.data_dir("k")
    assert path == "/dbfs/ml/store/data/k"
    assert store.local_path(path) == "/dbfs/ml/store/data/k"
    assert store.spark_url(path) == "file:///dbfs/ml/store/data/k"
    assert store.dataset_url(path) == "file:///dbfs/ml/store/data/k"
    assert store.local_path("dbfs:/ml/store/data/k") == path


@pytest.mark.parametrize("url, expected", [
    ("", "non-empty string"),
    ("   ", "non-empty string"),
    (None, "non-empty string"),
    (42, "non-empty string"),
    ("nosuchscheme://bucket/x", "unknown scheme 'nosuchscheme'"),
    ("memory://", "no location"),
    ("file://otherhost/x", "not a valid file URL"),
    ("dbfs://workspace/x", "not a valid dbfs URL"),
    ("/tmp/run#1", "'#' or '?'"),  # file URLs would end the path at '#'
    ("file:///tmp/run?x", "'#' or '?'"),
    ("dbfs:/ml/run#2", "'#' or '?'"),
])
def test_invalid_url_is_rejected_at_create(url, expected):
    with pytest.raises(ValueError, match=expected) as err:
        Store.create(url)
    assert repr(url) in str(err.value)


def test_invalid_storage_options():
    with pytest.raises(ValueError, match="storage_options"):
        Store.create("/tmp/x", storage_options="anon=true")


def test_write_bytes_replaces_atomically_and_leaves_no_temp_files(store):
    target = store.path("runs", "r", "state.json")
    store.write_bytes(target, b"one")
    store.write_bytes(target, b"two")
    assert store.read_bytes(target) == b"two"
    assert store.listdir(store.path("runs", "r")) == ["state.json"]


def test_failed_write_keeps_old_file(store, monkeypatch):
    target = store.path("runs", "r", "state.json")
    store.write_bytes(target, b"old")

    def crash(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(store._filesystem(), "mv", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.write_bytes(target, b"new")
    monkeypatch.undo()
    assert store.read_bytes(target) == b"old"
    assert store.listdir(store.path("runs", "r")) == ["state.json"]


def test_listdir_is_sorted_and_empty_when_missing(store):
    assert store.listdir(store.path("nothing")) == []
    for name in ("b", "a", "c"):
        store.write_bytes(store.path("runs", name), b"")
    assert store.listdir(store.path("runs")) == ["a", "b", "c"]


def _make_tree(root, files):
    for rel, content in files.items():
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "w") as f:
            f.write(content)


def _read_tree(root):
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name)) as f:
                found[os.path.relpath(os.path.join(folder, name), root)] = f.read()
    return found


@pytest.mark.parametrize("which", ["store", "memory_store"])
def test_put_dir_replaces_and_get_dir_round_trips(which, request, tmp_path):
    store = request.getfixturevalue(which)
    first, second = tmp_path / "first", tmp_path / "second"
    _make_tree(first, {"saved_model.pb": "v1", "variables/data": "w1"})
    _make_tree(second, {"saved_model.pb": "v2", "assets/vocab": "x"})
    target = store.model_dir("m")
    store.put_dir(str(first), target)
    store.put_dir(str(second), target)
    assert store.listdir(store.path("models")) == ["m"]
    store.get_dir(target, str(tmp_path / "back"))
    assert _read_tree(tmp_path / "back") == {"saved_model.pb": "v2", "assets/vocab": "x"}


def test_put_dir_requires_a_local_directory(store, tmp_path):
    with pytest.raises(ValueError, match="local_dir"):
        store.put_dir(str(tmp_path / "missing"), store.model_dir("m"))


def test_memory_url_reads_and_writes(memory_store):
    path = memory_store.path("runs", "r", "x.bin")
    memory_store.write_bytes(path, b"payload")
    assert memory_store.exists(path)
    assert memory_store.read_bytes(path) == b"payload"
    assert memory_store.listdir(memory_store.run_dir("r")) == ["x.bin"]
    assert memory_store.local_path(path) is None
    assert memory_store.spark_url(path) == path
    memory_store.delete(memory_store.run_dir("r"))
    assert not memory_store.exists(path)


@pytest.mark.parametrize("dump, load", [(pickle.dumps, pickle.loads),
                                        (cloudpickle.dumps, cloudpickle.loads)])
def test_pickle_round_trip_rebuilds_filesystem_lazily(memory_store, dump, load):
    path = memory_store.path("data", "k", "f")
    memory_store.write_bytes(path, b"x")  # builds the filesystem, which must not be pickled
    copy = load(dump(memory_store))
    assert copy == memory_store and copy._fs is None
    assert copy.read_bytes(path) == b"x"


def test_delete_removes_managed_paths(store):
    store.write_bytes(store.path("data", "k", "part"), b"x")
    store.delete(store.data_dir("k"))
    assert not store.exists(store.data_dir("k"))
    store.delete(store.data_dir("missing"))  # no error


@pytest.mark.parametrize("relative", ["", "/data", "/runs", "/other/x", "/data/../other",
                                      "/../outside", "/database/x"])
def test_delete_refuses_paths_it_does_not_manage(store, relative):
    store.write_bytes(store.path("other", "x"), b"keep")
    with pytest.raises(ValueError, match="refusing to delete"):
        store.delete(store.root + relative)
    assert store.read_bytes(store.path("other", "x")) == b"keep"


def test_delete_refuses_other_filesystems(store):
    with pytest.raises(ValueError, match="refusing to delete"):
        store.delete("/etc")
    with pytest.raises(ValueError, match="not absolute"):
        store.delete("data/k")
