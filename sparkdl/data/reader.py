"""Executor side: one rank's shard of a materialized split as a tf.data.Dataset.

Petastorm reads the row groups holding the shard's rows in threads; each is cut to the shard's
part, converted to numpy column-wise (no per-row Python work) and re-sliced into batches before
TensorFlow sees it.
Imports neither pyspark.sql nor TensorFlow at module level.
"""
from __future__ import annotations

import ctypes
import logging
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from petastorm.arrow_reader_worker import ArrowReaderWorker
from petastorm.cache import NullCache
from petastorm.fs_utils import get_filesystem_and_path_or_paths, normalize_dir_url
from petastorm.reader import Reader
from petastorm.workers_pool import EmptyResultError
from petastorm.workers_pool.thread_pool import ThreadPool
from petastorm.workers_pool.ventilator import ConcurrentVentilator
from pyarrow.filesystem import DaskFileSystem
from pyarrow.filesystem import FileSystem as LegacyFileSystem

from sparkdl.data.batching import Rebatcher
from sparkdl.data.meta import ColumnSpec, DatasetMeta, bytes_per_row
from sparkdl.data.sharding import group_slices, shard_bounds, steps_per_epoch

if TYPE_CHECKING:
    import tensorflow as tf

logger = logging.getLogger(__name__)

# petastorm 0.13 uses pyarrow's legacy dataset API, which warns on every reader and row group.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")

DEFAULT_WORKERS = 4
# Row groups read ahead beyond one per worker. petastorm's default, 3 more per worker, kept up
# to 16 in memory (306-316 MiB of Arrow buffers at 1M rows x 64 floats against 207-213 MiB with
# 2), for no speed: a pass over those 1M rows took 0.32-0.38 s either way.
ROW_GROUPS_AHEAD = 2
SHUFFLE_BUFFER_BYTES = 64 << 20
BLOCK_BYTES = 8 << 20  # rows handed to TensorFlow per Python call
# glibc's mallopt parameters (malloc.h) and the values the reader sets (see _reuse_freed_memory)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest
TRIM_THRESHOLD_BYTES = 64 << 20


def open_shard_dataset(path: str, rank: int, size: int, batch_size: int, *, meta: DatasetMeta,
                       shuffle: bool = True, seed: int | None = None,
                       num_epochs: int | None = None, shuffle_buffer_rows: int | None = None,
                       workers: int = DEFAULT_WORKERS,
                       storage_options: dict[str, Any] | None = None) -> tf.data.Dataset:
    """Batches of shard `rank` of `size` of the split at `path` (a petastorm URL).

    Yields ``(features, labels)`` or ``(features, labels, sample_weights)``; each is one tensor
    per column, or a tuple in column order when there are several. Shards are row ranges
    (`sparkdl.data.sharding`): disjoint, together the whole split, sizes within one row. Each
    epoch is every row of the shard once in `steps_per_epoch` batches, the last one holding the
    rest; ``num_epochs=None`` repeats forever. `seed` orders row groups and rows;
    `shuffle_buffer_rows` defaults to about 64 MiB of rows.
    """
    import tensorflow as tf

    _check_args(rank, size, batch_size, num_epochs, workers, shuffle_buffer_rows)
    _check_shardable(path, size, meta)
    columns = _read_columns(meta)
    window = shuffle_buffer_rows or max(batch_size, SHUFFLE_BUFFER_BYTES // bytes_per_row(columns))
    structure = _structure(meta)
    # The generator yields blocks of batches, (n, batch, ...), split in C++ into batches: one
    # Python round trip per block instead of per batch. Slicing blocks with flat_map took
    # 0.65-0.76x the time of unbatch() on blocks in memory (200k rows x 64 floats, batches of
    # 1024), and the fastest pass of the whole reader 0.81-0.91x.
    signature = _nest(structure, {c.name: tf.TensorSpec((None, None, *c.shape),
                                                        tf.as_dtype(c.dtype)) for c in columns})
    names = [c.name for c in columns]

    def blocks() -> Iterator[Any]:
        _reuse_freed_memory()  # after TensorFlow's setting (made as the iterator starts)
        for block in _shard_blocks(path, rank, size, batch_size, columns, shuffle=shuffle,
                                   seed=seed, num_epochs=num_epochs, window_rows=window,
                                   workers=workers, storage_options=storage_options):
            yield _nest(structure, dict(zip(names, block, strict=True)))

    dataset = tf.data.Dataset.from_generator(blocks, output_signature=signature)
    batches = dataset.flat_map(lambda *block: tf.data.Dataset.from_tensor_slices(block))
    # No tf.data autotuning thread: it sleeps in doubling periods (10 ms, 20 ms, ...) and
    # deleting an exhausted iterator waits for its next wake-up, 2.0-2.4 s after a 3 s pass.
    # Nothing here is tuned by it; prefetch's own tuner still sizes the buffer.
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.prefetch(tf.data.AUTOTUNE).with_options(options)


def open_dataset(path: str, batch_size: int, *, meta: DatasetMeta,
                 storage_options: dict[str, Any] | None = None) -> tf.data.Dataset:
    """Every row of a split once, unsharded and unshuffled in file order (evaluation, tests)."""
    return open_shard_dataset(path, 0, 1, batch_size, meta=meta, shuffle=False, num_epochs=1,
                              workers=1, storage_options=storage_options)


def _reuse_freed_memory() -> None:
    """Let freed memory serve the next batches and blocks instead of fresh pages.

    The first generator-dataset iterator of a process sets glibc's trim threshold to 128 KiB
    (TensorFlow's guard against RSS growth), which also pins the mmap threshold there: every
    batch, block and activation over 128 KiB then is a fresh mapping, faulted in page by page
    (161 page faults per step of the P4 MLP instead of 12). Allocations up to 32 MiB come from
    the heap again, and up to 64 MiB of freed memory stays mapped. No-op without glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)


def _shard_blocks(path: str, rank: int, size: int, batch_size: int, columns: list[ColumnSpec], *,
                  shuffle: bool, seed: int | None, num_epochs: int | None, window_rows: int,
                  workers: int, storage_options: dict[str, Any] | None,
                  ) -> Iterator[tuple[np.ndarray, ...]]:
    """Blocks of batches of numpy columns, epoch after epoch; the petastorm reader stops when
    iteration ends or the generator is dropped."""
    reader = _ShardReader(path, rank, size, shuffle=shuffle, seed=seed, workers=workers,
                          storage_options=storage_options)
    try:
        rng = np.random.default_rng(None if seed is None else [seed, rank]) if shuffle else None
        rebatcher = Rebatcher(batch_size, steps_per_epoch(reader.split_rows, batch_size, size),
                              window_rows, rng, block_rows=BLOCK_BYTES // bytes_per_row(columns))
        epoch = 0
        while True:
            rows = 0
            for table in reader:
                rows += table.num_rows
                yield from rebatcher.add([_to_numpy(table.column(c.name), c) for c in columns])
            if rows != reader.shard_rows:
                raise RuntimeError(f"read {rows} rows of shard {rank} of {size} of {path!r}; "
                                   f"expected {reader.shard_rows} (a row group was lost)")
            yield from rebatcher.end_epoch()
            epoch += 1
            if num_epochs is not None and epoch >= num_epochs:
                break
            reader.reset()  # same row groups, new order (petastorm reshuffles per pass)
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


class _SliceWorker(ArrowReaderWorker):
    """Reads one row group and publishes the rows of it that belong to the shard, as a Table.

    petastorm's own worker also copies every row group through ``take`` (even unshuffled)."""

    @staticmethod
    def new_results_queue_reader() -> _ArrowTables:
        return _ArrowTables()

    def process(self, piece_index: int, rows: tuple[int, int]) -> None:
        first, stop = rows
        table = self._split_pieces[piece_index].read(columns=list(self._schema.fields))
        self.publish_func(table.slice(first, stop - first))


class _LegacyFsspec(DaskFileSystem):
    """An fsspec filesystem as the legacy pyarrow.filesystem that petastorm 0.13 needs on
    pyarrow 14 (pyarrow's own S3FSWrapper calls an s3fs API that no longer exists)."""

    def isdir(self, path: str) -> bool:
        return self.fs.isdir(path)

    def isfile(self, path: str) -> bool:
        return self.fs.isfile(path)


class _ShardReader(Reader):
    """petastorm's Reader over one rank's rows: the row groups that hold its range of the split
    (laid end to end in (file, row group) order), each cut to its part by `_SliceWorker`.

    Plugs into petastorm 0.13's Reader hooks for choosing and ventilating row groups."""

    def __init__(self, url: str, rank: int, size: int, *, shuffle: bool, seed: int | None,
                 workers: int, storage_options: dict[str, Any] | None) -> None:
        self._rank, self._size = rank, size
        self.split_rows = self.shard_rows = 0
        self._slices: dict[int, tuple[int, int]] = {}
        filesystem, dataset_path = get_filesystem_and_path_or_paths(
            normalize_dir_url(url), storage_options=storage_options)
        if not isinstance(filesystem, LegacyFileSystem):
            # an fsspec store (s3://, ...): petastorm 0.13 opens it with ParquetDataset keywords
            # that pyarrow 14 accepts only with a legacy pyarrow.filesystem
            filesystem = _LegacyFsspec(filesystem)
        super().__init__(filesystem, dataset_path, worker_class=_SliceWorker,
                         reader_pool=ThreadPool(workers, 2 * workers, seed=seed), seed=seed,
                         shuffle_row_groups=shuffle, num_epochs=1, cache=NullCache(),
                         is_batched_reader=True)

    def _filter_row_groups(self, dataset: Any, row_groups: list[Any], *_: Any,
                           ) -> tuple[list[int], None]:
        order = sorted(range(len(row_groups)),
                       key=lambda i: (row_groups[i].path, row_groups[i].row_group))
        footers: dict[str, Any] = {}
        counts = []
        for i in order:
            piece = row_groups[i]
            if piece.path not in footers:
                footers[piece.path] = piece.get_metadata()
            counts.append(footers[piece.path].row_group(piece.row_group).num_rows)
        self.split_rows = sum(counts)
        begin, end = shard_bounds(self.split_rows, self._rank, self._size)
        self.shard_rows = end - begin
        self._slices = {order[i]: part for i, part in group_slices(counts, begin, end).items()}
        return sorted(self._slices), None

    def _create_ventilator(self, row_group_indexes: list[int], shuffle_row_groups: bool,
                           _drop_partitions: int, num_epochs: int | None, _predicate: Any,
                           _max_ventilation_queue_size: int, seed: int | None,
                           ) -> ConcurrentVentilator:
        items = [{"piece_index": i, "rows": self._slices[i]} for i in row_group_indexes]
        in_flight = self._workers_pool.workers_count + ROW_GROUPS_AHEAD
        return ConcurrentVentilator(self._workers_pool.ventilate, items, iterations=num_epochs,
                                    max_ventilation_queue_size=in_flight,
                                    randomize_item_order=shuffle_row_groups, random_seed=seed)


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
    """Fail before reading when a known split has fewer rows than shards."""
    for split in (meta.train, meta.val):
        if split is not None and path.rstrip("/").endswith(split.path.rstrip("/")):
            shard_bounds(split.rows, 0, size)


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
