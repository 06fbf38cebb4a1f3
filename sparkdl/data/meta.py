"""What materialize wrote: column specs and splits; JSON in the store, pickled to executors.

No pyspark imports here: workers read a DatasetMeta to open their shard.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sparkdl.store import Store

logger = logging.getLogger(__name__)

META_FILE = "_sparkdl_meta.json"
FORMAT_VERSION = 1
KINDS = ("scalar", "array", "vector")
STRING = "string"  # the dtype of text: Parquet strings, numpy object arrays of str in memory
# What a str in a numpy object array costs besides its text: the object and its pointer
STRING_OBJECT_BYTES = 64


@dataclass(frozen=True)
class ColumnSpec:
    """One stored column: numpy dtype (or STRING) and per-row shape (``()`` for scalars, ``(n,)``
    for vectors).

    A dimension is None only in inspect_columns() results, before the data has been profiled;
    so is `value_bytes`, the mean UTF-8 bytes of a string column's values.
    """

    name: str
    dtype: str
    shape: tuple[int | None, ...]
    kind: str  # one of KINDS
    value_bytes: int | None = None

    @property
    def row_bytes(self) -> int:
        """Bytes of one row in memory: a string's text and its Python object, a number's width."""
        values = np.prod(self.shape, dtype=np.int64)
        if self.dtype == STRING:
            return int((STRING_OBJECT_BYTES + (self.value_bytes or 0)) * values)
        return int(np.dtype(self.dtype).itemsize * values)

    @property
    def parquet_leaf(self) -> str:
        """The Parquet path of the column's values (an array's elements), as per-column writer
        options name it."""
        return f"{self.name}.list.element" if self.shape else self.name

    @property
    def dictionary_encoded(self) -> bool:
        """Whether it is written with a Parquet dictionary: all but float arrays, whose values
        rarely repeat, so a dictionary would be built per row group only to be dropped (a fifth
        of a write)."""
        return not (self.shape and self.dtype.startswith("float"))


def is_part_file(name: str) -> bool:
    """Whether a file name in a split is one of its Parquet data files (not metadata or hidden)."""
    return name.endswith(".parquet") and not name.startswith((".", "_"))


def bytes_per_row(columns: Iterable[ColumnSpec]) -> int:
    """Bytes of one row of `columns`, at least 1: byte budgets are divided by it into rows."""
    return max(1, sum(c.row_bytes for c in columns))


@dataclass(frozen=True)
class SplitInfo:
    """One written split (train or val): where it is and how much it holds."""

    path: str
    rows: int
    bytes: int
    files: int
    row_groups: int


@dataclass
class DatasetMeta:
    """A materialized dataset; ``with`` it (or call ``release()``) to delete the data."""

    key: str
    feature_cols: list[str]
    label_cols: list[str]
    sample_weight_col: str | None
    columns: dict[str, ColumnSpec]
    train: SplitInfo
    val: SplitInfo | None
    # "once": this fit only; "app": reused within the Spark application that wrote it;
    # "key": reused wherever the user's cache_key is given again (see materialize)
    reuse: str = "app"
    app: str | None = None  # the Spark application that wrote it (for reuse "app")
    written_at: float = 0.0  # seconds since the epoch; 0.0 when written before it was recorded
    store: Store | None = field(default=None, compare=False, repr=False)

    @property
    def train_path(self) -> str:
        return self.train.path

    @property
    def val_path(self) -> str | None:
        return self.val.path if self.val else None

    @property
    def train_rows(self) -> int:
        return self.train.rows

    @property
    def val_rows(self) -> int:
        return self.val.rows if self.val else 0

    @property
    def train_bytes(self) -> int:
        return self.train.bytes

    @property
    def val_bytes(self) -> int:
        return self.val.bytes if self.val else 0

    def to_json(self) -> str:
        body = asdict(self)
        body.pop("store")
        body["format"] = FORMAT_VERSION
        return json.dumps(body, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, store: Store | None = None) -> DatasetMeta:
        body = json.loads(text)
        if body.pop("format", None) != FORMAT_VERSION:
            raise ValueError(f"dataset metadata has format {body.get('format')!r}; "
                             f"expected {FORMAT_VERSION}")
        columns = {name: ColumnSpec(**{**c, "shape": tuple(c["shape"])})
                   for name, c in body.pop("columns").items()}
        train, val = SplitInfo(**body.pop("train")), body.pop("val")
        return cls(**body, columns=columns, train=train,
                   val=SplitInfo(**val) if val else None, store=store)

    @staticmethod
    def meta_path(store: Store, key: str) -> str:
        return store.path("data", key, META_FILE)

    @classmethod
    def load(cls, store: Store, key: str) -> DatasetMeta | None:
        """The dataset stored under `key`, or None when there is no complete entry."""
        path = cls.meta_path(store, key)
        if not store.exists(path):
            return None
        return cls.from_json(store.read_bytes(path).decode("utf-8"), store=store)

    def save(self) -> None:
        """Write the metadata file; written last, it marks the data directory as complete."""
        store = self._require_store()
        store.write_bytes(self.meta_path(store, self.key), self.to_json().encode("utf-8"))

    def release(self) -> None:
        """Delete the materialized data (metadata first, so a partial delete is never reused)."""
        store = self._require_store()
        store.delete(self.meta_path(store, self.key))
        store.delete(store.data_dir(self.key))
        logger.info("released materialized data %s", store.data_dir(self.key))

    def _require_store(self) -> Store:
        if self.store is None:
            raise ValueError(f"dataset {self.key!r} has no store attached; expected a DatasetMeta "
                             "from materialize() or DatasetMeta.load(store, key)")
        return self.store

    def __enter__(self) -> DatasetMeta:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
