"""Executor side: one rank's shard of a materialized split as a tf.data.Dataset (or numpy batches).

The row groups holding the shard's rows are read in threads with pyarrow (``pyarrow.parquet``
over a ``pyarrow.fs`` filesystem); each is cut to the shard's part, converted to numpy
column-wise (no per-row Python work) and re-sliced into batches before TensorFlow sees it.
Imports neither pyspark.sql nor TensorFlow at module level, nor petastorm at all.
"""
from __future__ import annotations

import ctypes
import logging
import queue
import random
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sparkdl.data.batching import Rebatcher
from sparkdl.data.meta import STRING, ColumnSpec, DatasetMeta, bytes_per_row, is_part_file
from sparkdl.data.sharding import group_slices, shard_bounds, steps_per_epoch

if TYPE_CHECKING:
    import tensorflow as tf

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

DEFAULT_WORKERS = 4
# Row groups read ahead beyond one per worker. 3 more per worker (petastorm's default) kept up
# to 16 in memory (306-316 MiB of Arrow buffers at 1M rows x 64 floats against 207-213 MiB with
# 2), for no speed: a pass over those 1M rows took 0.32-0.38 s either way.
ROW_GROUPS_AHEAD = 2
SHUFFLE_BUFFER_BYTES = 64 << 20
BLOCK_BYTES = 8 << 20  # rows handed to TensorFlow per Python call
BATCHES_AHEAD = 4  # numpy batches made ahead of a consumer other than tf.data
# glibc's mallopt parameters (malloc.h) and the values the reader sets (see _reuse_freed_memory)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest
TRIM_THRESHOLD_BYTES = 64 << 20


def open_shard_dataset(path: str, rank: int, size: int, batch_size: int, *, meta: DatasetMeta,
                       shuffle: bool = True, seed: int | None = None,
                       num_epochs: int | None = None, shuffle_buffer_rows: int | None = None,
                       workers: int = DEFAULT_WORKERS,
                       storage_options: dict[str, Any] | None = None) -> tf.data.Dataset:
    """Batches of shard `rank` of `size` of the split at `path` (a `Store.dataset_url`).

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
    window = shuffle_buffer_rows or window_rows(columns, batch_size)
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

    # prefetch(1): the next block is made (reading, shuffling) while this one is cut into
    # batches; a shuffled pass over 1M rows x 64 floats took 0.59 s against 0.74 s without.
    dataset = tf.data.Dataset.from_generator(blocks, output_signature=signature).prefetch(1)
    batches = dataset.flat_map(lambda *block: tf.data.Dataset.from_tensor_slices(block))
    # No tf.data autotuning thread: it sleeps in doubling periods (10 ms, 20 ms, ...) and
    # deleting an exhausted iterator waits for its next wake-up, 2.0-2.4 s after a 3 s pass.
    # Nothing here is tuned by it; prefetch's own tuner still sizes the buffer.
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.prefetch(tf.data.AUTOTUNE).with_options(options)


def open_shard_batches(path: str, rank: int, size: int, batch_size: int, *, meta: DatasetMeta,
                       shuffle: bool = True, seed: int | None = None,
                       num_epochs: int | None = None, workers: int = DEFAULT_WORKERS,
                       storage_options: dict[str, Any] | None = None,
                       input_shapes: list[tuple] | None = None) -> Iterator[Any]:
    """The batches of `open_shard_dataset` as numpy arrays, for Keras on a backend other than
    TensorFlow (nothing imports TensorFlow). They are made in a thread of their own, at most
    BATCHES_AHEAD ahead of the consumer; `input_shapes` reshapes the features per row."""
    _check_args(rank, size, batch_size, num_epochs, workers, None)
    _check_shardable(path, size, meta)
    columns = _read_columns(meta)
    window = window_rows(columns, batch_size)
    structure, names = _structure(meta), [c.name for c in columns]

    def batches() -> Iterator[Any]:
        for block in _shard_blocks(path, rank, size, batch_size, columns, shuffle=shuffle,
                                   seed=seed, num_epochs=num_epochs, window_rows=window,
                                   workers=workers, storage_options=storage_options):
            for i in range(len(block[0])):
                values = dict(zip(names, (column[i] for column in block), strict=True))
                if input_shapes is not None:
                    for name, shape in zip(meta.feature_cols, input_shapes, strict=True):
                        values[name] = values[name].reshape(
                            -1, *[-1 if d is None else d for d in shape])
                yield _nest(structure, values)

    return _made_ahead(batches(), f"sparkdl-batches-{rank}")


def window_rows(columns: list[ColumnSpec], batch_size: int) -> int:
    """Rows of a shuffle window: about SHUFFLE_BUFFER_BYTES of the columns in memory (strings
    counted by their profiled mean size), at least one batch."""
    return max(batch_size, SHUFFLE_BUFFER_BYTES // bytes_per_row(columns))


def _made_ahead(items: Iterator[_T], thread_name: str,
                depth: int = BATCHES_AHEAD) -> Iterator[_T]:
    """`items` produced in a thread of its own, at most `depth` ahead of the consumer; the
    producer's error is raised here, and closing this generator stops the producer."""
    made: queue.Queue[tuple[str, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                made.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("end", None)
        except BaseException as error:  # raised again in the consumer
            put("error", error)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name=thread_name, daemon=True)
    producer.start()
    try:
        while True:
            kind, value = made.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        producer.join()


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
    """Blocks of batches of numpy columns, epoch after epoch; the reader's threads stop when
    iteration ends or the generator is dropped."""
    reader = _ShardReader(path, rank, size, [c.name for c in columns], shuffle=shuffle,
                          seed=seed, workers=workers, storage_options=storage_options)
    try:
        rng = np.random.default_rng(None if seed is None else [seed, rank]) if shuffle else None
        rebatcher = Rebatcher(batch_size, steps_per_epoch(reader.split_rows, batch_size, size),
                              window_rows, rng, block_rows=BLOCK_BYTES // bytes_per_row(columns))
        epoch = 0
        while True:
            rows = 0
            for table in reader:  # one epoch: the same row groups, in a new order when shuffled
                rows += table.num_rows
                yield from rebatcher.add([_to_numpy(table.column(c.name), c) for c in columns])
            if rows != reader.shard_rows:
                raise RuntimeError(f"read {rows} rows of shard {rank} of {size} of {path!r}; "
                                   f"expected {reader.shard_rows} (a row group was lost)")
            yield from rebatcher.end_epoch()
            epoch += 1
            if num_epochs is not None and epoch >= num_epochs:
                break
    finally:
        reader.close()


def parquet_filesystem(url: str, storage_options: dict[str, Any] | None = None,
                       ) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and path for `url`: pyarrow's own for ``file://`` and local paths,
    else the fsspec filesystem of the URL's scheme (with `storage_options`) wrapped for pyarrow."""
    if url.startswith("file://") or "://" not in url:
        return pafs.LocalFileSystem(), url.removeprefix("file://")
    import fsspec

    filesystem, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem)), root


class _ShardReader:
    """One rank's rows of a split: the row groups that hold its range (laid end to end in
    (file, row group) order), each read in a thread and cut to the shard's part.

    Iterating gives one epoch of pyarrow Tables, in a new row-group order each time when
    shuffled; at most ``workers + ROW_GROUPS_AHEAD`` row groups are read ahead of the consumer.
    """

    def __init__(self, url: str, rank: int, size: int, columns: list[str], *, shuffle: bool,
                 seed: int | None, workers: int,
                 storage_options: dict[str, Any] | None) -> None:
        self._fs, root = parquet_filesystem(url, storage_options)
        self._columns, self._shuffle = columns, shuffle
        self._order_rng = random.Random(None if seed is None else f"{seed}/{rank}")
        self._ahead = workers + ROW_GROUPS_AHEAD
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"sparkdl-reader-{rank}")
        try:
            files = sorted(info.path for info in self._fs.get_file_info(pafs.FileSelector(root))
                           if info.type == pafs.FileType.File and is_part_file(info.base_name))
            if not files:
                raise FileNotFoundError(f"no Parquet part files in {url!r}; expected a split "
                                        "written by sparkdl's materialize")
            self._footers = dict(zip(files, self._pool.map(self._footer, files), strict=True))
        except BaseException:
            self._pool.shutdown(cancel_futures=True)
            raise
        groups = [(f, g) for f in files for g in range(self._footers[f].num_row_groups)]
        counts = [self._footers[f].row_group(g).num_rows for f, g in groups]
        self.split_rows = sum(counts)
        begin, end = shard_bounds(self.split_rows, rank, size)
        self.shard_rows = end - begin
        self._pieces = [(*groups[i], first, stop)
                        for i, (first, stop) in group_slices(counts, begin, end).items()]

    def _footer(self, path: str) -> pq.FileMetaData:
        with self._fs.open_input_file(path) as f:
            return pq.read_metadata(f)

    def _read(self, path: str, group: int, first: int, stop: int) -> pa.Table:
        """The rows ``[first, stop)`` of one row group, the reader's columns only."""
        with self._fs.open_input_file(path) as f:
            table = pq.ParquetFile(f, metadata=self._footers[path]).read_row_group(
                group, columns=self._columns)
        return table.slice(first, stop - first)

    def __iter__(self) -> Iterator[pa.Table]:
        pieces = list(self._pieces)
        if self._shuffle:
            self._order_rng.shuffle(pieces)
        queued = iter(pieces)
        in_flight: deque[Future[pa.Table]] = deque(
            self._pool.submit(self._read, *piece) for piece in islice(queued, self._ahead))
        try:
            while in_flight:
                table = in_flight.popleft().result()
                piece = next(queued, None)
                if piece is not None:
                    in_flight.append(self._pool.submit(self._read, *piece))
                yield table
        finally:
            for future in in_flight:
                future.cancel()

    def close(self) -> None:
        """Stop the threads (row groups not yet started are dropped)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


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
    values = values.reshape((rows, *spec.shape))
    return values if spec.dtype == STRING else values.astype(spec.dtype, copy=False)


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
