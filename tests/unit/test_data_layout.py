"""Worker-side imports stay light; materialize's file-count rules and the fsspec part writer
(no Spark session needed)."""
from __future__ import annotations

import subprocess
import sys
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sparkdl.data.materialize import MAX_FILE_BYTES, MIN_FILE_BYTES, num_files, write_tasks
from sparkdl.data.meta import ColumnSpec
from sparkdl.data.writer import make_part_writer
from sparkdl.store import Store


def test_worker_side_modules_import_without_pyspark_sql_or_tensorflow():
    code = ("import sys, sparkdl.store, sparkdl.data, sparkdl.data.reader; "
            "print(sorted(m for m in sys.modules if m.startswith(('pyspark', 'tensorflow'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("rows, row_bytes, num_proc, parallelism, expected", [
    (1000, 100, 2, 8, 2),                                   # tiny: one file per process
    (10, 4 * MAX_FILE_BYTES, 2, 1, 40),                    # big: files of at most MAX
    (10, 4 * MAX_FILE_BYTES, 3, 1, 42),                    # ... in multiples of num_proc
    (100, MIN_FILE_BYTES, 2, 16, 16),                      # enough tasks for the cluster
    (8, MIN_FILE_BYTES, 2, 16, 8),                         # ... but files of at least MIN
])
def test_num_files(rows, row_bytes, num_proc, parallelism, expected):
    assert num_files(rows, row_bytes, num_proc, parallelism) == expected


@pytest.mark.parametrize("rows, row_bytes, num_proc, parallelism, expected", [
    (10, 4 * MAX_FILE_BYTES, 2, 1, 2),       # big data, small cluster: files are cut, not tasks
    (100, MIN_FILE_BYTES, 2, 16, 16),       # enough tasks for the cluster
    (2, MIN_FILE_BYTES, 3, 16, 3),          # ... each writing over MIN; at least num_proc
])
def test_write_tasks_count_the_cluster_not_the_file_size(rows, row_bytes, num_proc, parallelism,
                                                          expected):
    assert write_tasks(rows, row_bytes, num_proc, parallelism) == expected


def test_part_writer_cuts_a_partition_into_files_of_at_most_file_rows():
    store = Store.create(f"memory://sparkdl-writer-{uuid.uuid4().hex}")  # an object store
    write = make_part_writer(store, store.path("out"), "split", group_rows=4, file_rows=10,
                             specs=[ColumnSpec("x", "int64", (), "scalar")])
    batches = [pa.RecordBatch.from_pydict({"x": list(range(i, i + 7)),
                                           "split": ["train"] * 6 + ["val"]})
               for i in range(0, 35, 7)]
    written = pa.Table.from_batches(list(write(iter(batches)))).to_pylist()
    by_split = {name: sorted((r for r in written if f"/{name}/" in r["file"]),
                             key=lambda r: r["file"]) for name in ("train", "val")}
    assert [r["rows"] for r in by_split["train"]] == [10, 10, 10]
    assert [r["rows"] for r in by_split["val"]] == [5]
    train = pa.concat_tables(pq.read_table(store.open(r["file"])) for r in by_split["train"])
    assert train.column("x").to_pylist() == [x for x in range(35) if x % 7 != 6]
    footers = [pq.read_metadata(store.open(r["file"])) for r in by_split["train"]]
    assert max(f.row_group(g).num_rows for f in footers for g in range(f.num_row_groups)) == 4


def test_part_writer_keeps_dictionaries_for_all_but_float_arrays():
    store = Store.create(f"memory://sparkdl-writer-{uuid.uuid4().hex}")
    specs = [ColumnSpec("features", "float32", (2,), "array"),
             ColumnSpec("tokens", "int32", (2,), "array"),
             ColumnSpec("label", "float32", (), "scalar")]
    write = make_part_writer(store, store.path("out"), None, group_rows=100, file_rows=100,
                             specs=specs)
    batch = pa.RecordBatch.from_pydict({
        "features": pa.array([[0.5, 1.5]] * 20, pa.list_(pa.float32())),
        "tokens": pa.array([[1, 2]] * 20, pa.list_(pa.int32())),
        "label": pa.array([1.0] * 20, pa.float32())})
    [file] = pa.Table.from_batches(list(write(iter([batch])))).column("file").to_pylist()
    group = pq.read_metadata(store.open(file)).row_group(0)
    assert {group.column(i).path_in_schema: any("DICTIONARY" in e
                                                for e in group.column(i).encodings)
            for i in range(group.num_columns)} == {
        "features.list.element": False, "tokens.list.element": True, "label": True}
