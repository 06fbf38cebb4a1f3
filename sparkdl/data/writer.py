"""Executor side of materialize for stores Spark has no connector for (s3://, gs://, ...): each
task writes its partition as one Parquet file per split through the Store's fsspec filesystem.

Imported by Spark Python workers; needs no SparkSession.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sparkdl.data.meta import ColumnSpec
from sparkdl.store import Store

WRITTEN_SCHEMA = "file string, rows long"


class _SplitFile:
    """One split's Parquet file of a task, written a row group at a time."""

    def __init__(self, store: Store, path: str, schema: pa.Schema, group_rows: int,
                 dictionary: list[str]) -> None:
        self.path = path
        self.group_rows = group_rows
        self.rows = 0
        self._out = store.open(path, "wb")  # an object store publishes it whole, on close
        self._writer = pq.ParquetWriter(self._out, schema, use_dictionary=dictionary)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def add(self, rows: pa.Table) -> None:
        self._pending.append(rows)
        self._pending_rows += rows.num_rows
        self.rows += rows.num_rows
        if self._pending_rows >= self.group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.concat_tables(self._pending),
                                     row_group_size=self.group_rows)
            self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()
        self._out.close()


def make_part_writer(store: Store, directory: str, split_col: str | None, group_rows: int,
                     file_rows: int, specs: list[ColumnSpec]
                     ) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The mapInArrow function writing a partition of the `specs` columns under
    `directory`/{train,val} (by the value of `split_col`; all to train without one) in row
    groups of `group_rows` rows and files of at most `file_rows` rows; yields one WRITTEN_SCHEMA
    row per file. Only files a successful task reports are data: the driver removes what a
    failed attempt left."""
    dictionary = [spec.parquet_leaf for spec in specs if spec.dictionary_encoded]

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        name = f"part-{uuid.uuid4().hex}"
        files: dict[str, _SplitFile] = {}
        done: list[_SplitFile] = []
        try:
            for batch in batches:
                for split, part in _by_split(batch, split_col):
                    while part.num_rows:
                        if split not in files:
                            files[split] = _SplitFile(
                                store, f"{directory}/{split}/{name}-{len(done)}.parquet",
                                part.schema, group_rows, dictionary)
                        file = files[split]
                        room = file_rows - file.rows
                        file.add(part.slice(0, room))
                        part = part.slice(room)
                        if file.rows >= file_rows:
                            file.close()
                            done.append(files.pop(split))
        finally:
            for file in files.values():
                file.close()
        done += files.values()
        yield pa.RecordBatch.from_pydict({"file": [f.path for f in done],
                                          "rows": [f.rows for f in done]},
                                         schema=pa.schema([("file", pa.string()),
                                                           ("rows", pa.int64())]))

    return write


def _by_split(batch: pa.RecordBatch, split_col: str | None) -> Iterator[tuple[str, pa.Table]]:
    rows = pa.Table.from_batches([batch])
    if split_col is None:
        yield "train", rows
        return
    split, rest = rows.column(split_col), rows.drop_columns([split_col])
    for name in ("train", "val"):
        part = rest.filter(pc.equal(split, name))
        if part.num_rows:
            yield name, part
