"""Executor side: one rank's shard of a materialized split as a tf.data.Dataset.

Petastorm picks and reads the shard's row groups in threads; each row group is converted to
numpy column-wise (no per-row Python work) and re-sliced into batches before TensorFlow sees it.
Imports neither pyspark.sql nor TensorFlow at module level.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from petastorm import make_batch_reader
from petastorm.errors import NoDataAvailableError
from petastorm.reader import Reader
from petastorm.workers_pool import EmptyResultError

from sparkdl.data.batching import Rebatcher
from sparkdl.data.meta import ColumnSpec, DatasetMeta

if TYPE_CHECKING:
    import tensorflow as tf

logger = logging.getLogger(__name__)

# petastorm 0.13 uses pyarrow's legacy dataset API, which warns on every reader and row group.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")

DEFAULT_WORKERS = 4
SHUFFLE_BUFFER_BYTES = 64 << 20
BLOCK_BYTES = 8 << 20  # rows handed to TensorFlow per Python call


def open_shard_dataset(path: str, rank: int, size: int, batch_size: int, *, meta: DatasetMeta,
                       shuffle: bool = True, seed: int | None = None,
                       num_epochs: int | None = None, shuffle_buffer_rows: int | None = None,
                       workers: int = DEFAULT_WORKERS,
                       storage_options: dict[str, Any] | None = None) -> tf.data.Dataset:
    """Batches of shard `rank` of `size` of the split at `path` (a petastorm URL).

    Yields ``(features, labels)`` or ``(features, labels, sample_weights)``; each is one tensor
    per column, or a tuple in column order when there are several. Every row of the shard comes
    once per epoch; ``num_epochs=None`` repeats forever with every batch full. Shards are sets
    of Parquet row groups (group i goes to rank i % size): disjoint, together the whole split.
    `seed` orders row groups and rows; `shuffle_buffer_rows` defaults to about 64 MiB of rows.
    """
    import tensorflow as tf

    _check_args(rank, size, batch_size, num_epochs, workers, shuffle_buffer_rows)
    _check_shardable(path, size, meta)
    columns = _read_columns(meta)
    window = shuffle_buffer_rows or max(batch_size, SHUFFLE_BUFFER_BYTES // _row_bytes(columns))
    structure = _structure(meta)
    batch_dim = batch_size if num_epochs is None else None
    # The generator yields blocks of batches, (n, batch, ...), which unbatch() splits in C++:
    # one Python round trip per block instead of per batch.
    signature = _nest(structure, {c.name: tf.TensorSpec((None, batch_dim, *c.shape),
                                                        tf.as_dtype(c.dtype)) for c in columns})
    names = [c.name for c in columns]

    def blocks() -> Iterator[Any]:
        for block in _shard_blocks(path, rank, size, batch_size, columns, shuffle=shuffle,
                                   seed=seed, num_epochs=num_epochs, window_rows=window,
                                   workers=workers, storage_options=storage_options):
            rows = len(block[0])
            batches = rows // batch_size if rows % batch_size == 0 else 1
            yield _nest(structure, {name: a.reshape(batches, rows // batches, *a.shape[1:])
                                    for name, a in zip(names, block, strict=True)})

    dataset = tf.data.Dataset.from_generator(blocks, output_signature=signature)
    return dataset.unbatch().prefetch(tf.data.AUTOTUNE)


def open_dataset(path: str, batch_size: int, *, meta: DatasetMeta,
                 storage_options: dict[str, Any] | None = None) -> tf.data.Dataset:
    """Every row of a split once, unsharded and unshuffled in file order (evaluation, tests)."""
    return open_shard_dataset(path, 0, 1, batch_size, meta=meta, shuffle=False, num_epochs=1,
                              workers=1, storage_options=storage_options)


def _shard_blocks(path: str, rank: int, size: int, batch_size: int, columns: list[ColumnSpec], *,
                   shuffle: bool, seed: int | None, num_epochs: int | None, window_rows: int,
                   workers: int, storage_options: dict[str, Any] | None,
                   ) -> Iterator[tuple[np.ndarray, ...]]:
    """Blocks of whole batches of numpy columns; the petastorm reader stops when iteration ends
    or the generator is dropped."""
    rng = np.random.default_rng(None if seed is None else [seed, rank]) if shuffle else None
    rebatcher = Rebatcher(batch_size, window_rows, rng,
                          block_rows=BLOCK_BYTES // _row_bytes(columns))
    reader = _open_reader(path, rank, size, shuffle=shuffle, seed=seed, workers=workers,
                          storage_options=storage_options)
    try:
        epoch = 0
        while True:
            rows = 0
            for table in reader:
                rows += table.num_rows
                yield from rebatcher.add([_to_numpy(table.column(c.name), c) for c in columns])
            if rows == 0:
                raise ValueError(f"shard {rank} of {size} of {path!r} has no rows; expected "
                                 "at least one row group per shard")
            yield from rebatcher.end_epoch()
            epoch += 1
            if num_epochs is not None and epoch >= num_epochs:
                break
            reader.reset()  # same row groups, new order (petastorm reshuffles per pass)
        yield from rebatcher.finish()
    finally:
        reader.stop()
        reader.join()


class _ArrowTables:
    """Hands over each row group as a pyarrow Table instead of petastorm's numpy conversion.

    petastorm converts list columns row by row (np.vstack of a Python list); converting whole
    columns is ~2x faster. Plugs into petastorm 0.13's results-queue protocol (pinned version).
    """

    batched_output = True

    def read_next(self, workers_pool: Any, schema: Any, ngram: Any) -> pa.Table:
        while True:
            try:
                return workers_pool.get_results()
            except EmptyResultError:
                # petastorm's ThreadPool checks "workers idle" and "ventilation finished" one after
                # the other; row groups ventilated in between are dropped (~5% of one-row-group
                # shards read nothing). Once ventilation has finished, a fresh check is reliable.
                if workers_pool.all_workers_done():
                    raise StopIteration from None


def _open_reader(path: str, rank: int, size: int, *, shuffle: bool, seed: int | None,
                 workers: int, storage_options: dict[str, Any] | None) -> Reader:
    sharded = size > 1
    try:
        reader = make_batch_reader(path, reader_pool_type="thread", workers_count=workers,
                                   results_queue_size=2 * workers, seed=seed,
                                   shuffle_row_groups=shuffle, num_epochs=1,
                                   cur_shard=rank if sharded else None,
                                   shard_count=size if sharded else None,
                                   storage_options=storage_options)
    except NoDataAvailableError as err:
        raise ValueError(f"cannot split {path!r} into {size} shards: {err}") from None
    reader._results_queue_reader = _ArrowTables()
    return reader


def _to_numpy(column: pa.ChunkedArray, spec: ColumnSpec) -> np.ndarray:
    """A column of one row group as a contiguous array of shape (rows, *spec.shape)."""
    array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if spec.shape:
        array = array.flatten()
    values = array.to_numpy(zero_copy_only=False)
    rows = len(column)
    if values.size != rows * int(np.prod(spec.shape)):
        raise ValueError(f"column {spec.name!r} has {values.size} values in {rows} rows; "
                         f"expected shape {spec.shape} per row")
    return values.reshape((rows, *spec.shape)).astype(spec.dtype, copy=False)


def _structure(meta: DatasetMeta) -> tuple[Any, ...]:
    """Column names nested as the dataset's elements: (features, labels[, weights])."""
    def group(cols: list[str]) -> Any:
        return cols[0] if len(cols) == 1 else tuple(cols)

    parts = [group(meta.feature_cols), group(meta.label_cols)]
    if meta.sample_weight_col:
        parts.append(meta.sample_weight_col)
    return tuple(parts)


def _nest(structure: Any, values: dict[str, Any]) -> Any:
    if isinstance(structure, str):
        return values[structure]
    return tuple(_nest(s, values) for s in structure)


def _read_columns(meta: DatasetMeta) -> list[ColumnSpec]:
    """Specs of the distinct columns to read (a column may be both feature and label)."""
    names = dict.fromkeys(meta.feature_cols + meta.label_cols
                          + ([meta.sample_weight_col] if meta.sample_weight_col else []))
    missing = [n for n in names if n not in meta.columns]
    if missing:
        raise ValueError(f"dataset {meta.key!r} has no spec for column(s) {missing}; "
                         f"expected one of {sorted(meta.columns)}")
    return [meta.columns[n] for n in names]


def _check_shardable(path: str, size: int, meta: DatasetMeta) -> None:
    """Fail before reading when a known split has fewer row groups (the shard unit) than shards."""
    for split in (meta.train, meta.val):
        if split is not None and path.rstrip("/").endswith(split.path.rstrip("/")) \
                and split.row_groups < size:
            raise ValueError(f"size {size} is invalid for {path!r}: it has {split.row_groups} "
                             f"Parquet row group(s); expected size <= {split.row_groups} "
                             "(materialize with num_proc >= size)")


def _row_bytes(columns: list[ColumnSpec]) -> int:
    return max(1, sum(c.row_bytes for c in columns))


def _check_args(rank: int, size: int, batch_size: int, num_epochs: int | None, workers: int,
                shuffle_buffer_rows: int | None) -> None:
    for name, value, low in [("size", size, 1), ("batch_size", batch_size, 1),
                             ("workers", workers, 1)]:
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} {value!r} is invalid; expected an int >= {low}")
    if not isinstance(rank, int) or not 0 <= rank < size:
        raise ValueError(f"rank {rank!r} is invalid; expected an int in [0, {size})")
    if num_epochs is not None and (not isinstance(num_epochs, int) or num_epochs < 1):
        raise ValueError(f"num_epochs {num_epochs!r} is invalid; expected None or an int >= 1")
    if shuffle_buffer_rows is not None and (not isinstance(shuffle_buffer_rows, int)
                                            or shuffle_buffer_rows < 1):
        raise ValueError(f"shuffle_buffer_rows {shuffle_buffer_rows!r} is invalid; "
                         "expected None or an int >= 1")
