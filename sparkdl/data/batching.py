"""Re-slice column chunks of any size (Parquet row groups) into an epoch's batches, shuffled."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

Columns = list[np.ndarray]
# TensorFlow takes a numpy array without a copy only at this alignment (EIGEN_MAX_ALIGN_BYTES);
# numpy's own allocations are 16-byte aligned.
ALIGN_BYTES = 64


class Rebatcher:
    """Chunks of an epoch in; blocks of batches out, each array shaped ``(batches, rows, ...)``.

    An epoch gives `steps` batches: ``steps - 1`` of `batch_size` rows, then one last batch with
    all the epoch's remaining rows (`sparkdl.data.sharding` sizes shards so that it holds 1 to
    batch_size + 1). Rows are shuffled within windows of at least `window_rows` rows that never
    span an epoch boundary. Blocks of whole batches hold at most `block_rows` rows, so that the
    consumer pays its per-element overhead once per block.
    """

    def __init__(self, batch_size: int, steps: int, window_rows: int = 0,
                 rng: np.random.Generator | None = None, block_rows: int | None = None):
        self._batch_size, self._steps = batch_size, steps
        self._window_rows = window_rows if rng is not None else 0
        self._rng = rng
        self._block_rows = max(1, (block_rows or batch_size) // batch_size) * batch_size
        self._pending: list[Columns] = []  # chunks not yet shuffled
        self._pending_rows = 0
        self._head: Columns | None = None  # rows already in output order, not yet emitted
        self._window: Columns = []  # buffers a shuffle window is copied into, kept across windows
        self._full_left = steps - 1  # whole batches still to emit this epoch

    def add(self, columns: Columns) -> Iterator[tuple[np.ndarray, ...]]:
        """Take one chunk (same-length arrays, one per column); yield blocks that are complete."""
        self._pending.append(columns)
        self._pending_rows += len(columns[0])
        if self._pending_rows >= self._window_rows and self._full_left > 0:
            yield from self._drain(last=False)

    def end_epoch(self) -> Iterator[tuple[np.ndarray, ...]]:
        """Emit the epoch's remaining whole batches and its last batch (all rows left)."""
        yield from self._drain(last=True)
        self._full_left = self._steps - 1

    def _drain(self, last: bool) -> Iterator[tuple[np.ndarray, ...]]:
        pending, head = self._pending_rows, self._head
        columns = self._laid_out() if self._rng is not None else [
            np.concatenate(parts) if len(parts) > 1 else parts[0]
            for parts in zip(*self._pending, strict=True)]
        held = len(head[0]) if head is not None else 0
        self._pending, self._pending_rows, self._head = [], 0, None
        # Rows are gathered block by block: small, reusable allocations instead of one
        # window-sized copy (which costs page faults on every window).
        order = self._rng.permutation(pending) if self._rng is not None and pending else None

        def rows_between(begin: int, end: int) -> Columns:
            """Output rows [begin, end): the held rows first, then the pending ones in order."""
            parts = []
            if begin < held:
                parts.append([column[begin:min(end, held)] for column in head])
            if end > held:
                lo, hi = max(begin, held) - held, end - held
                parts.append([column[lo:hi] if order is None
                              else _gather(column, order[lo:hi]) for column in columns])
            return parts[0] if len(parts) == 1 else [np.concatenate(p)
                                                     for p in zip(*parts, strict=True)]

        total, size = held + pending, self._batch_size
        full = min(self._full_left, (total - 1 if last else total) // size) if total else 0
        self._full_left -= full
        for begin in range(0, full * size, self._block_rows):
            end = min(begin + self._block_rows, full * size)
            yield _batched(rows_between(begin, end), size)
        if full * size == total:
            return
        rest = rows_between(full * size, total)
        if last:
            yield _batched(rest, total - full * size)
        else:
            self._head = rest

    def _laid_out(self) -> Columns:
        """The pending chunks end to end in the window buffers, which outputs never share (rows
        are gathered out of them): a fresh window-sized array each time faults in every page."""
        rows = self._pending_rows
        if not self._window or len(self._window[0]) < rows:
            self._window = [np.empty((rows + rows // 4, *c.shape[1:]), c.dtype)
                            for c in self._pending[0]]
        at = 0
        for chunk in self._pending:
            for buffer, column in zip(self._window, chunk, strict=True):
                buffer[at:at + len(column)] = column
            at += len(chunk[0])
        return [buffer[:rows] for buffer in self._window]


def _batched(columns: Columns, batch_rows: int) -> tuple[np.ndarray, ...]:
    return tuple(c.reshape(len(c) // batch_rows, batch_rows, *c.shape[1:]) for c in columns)


def _gather(column: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``column[rows]`` in a new ALIGN_BYTES-aligned array (object columns: numpy's own), which
    TensorFlow takes with one copy less (docs/performance.md); np.take releases the GIL."""
    if column.dtype.hasobject:
        return np.take(column, rows, axis=0)
    shape = (len(rows), *column.shape[1:])
    nbytes = int(np.prod(shape)) * column.itemsize
    raw = np.empty(nbytes + ALIGN_BYTES, np.uint8)
    start = -raw.ctypes.data % ALIGN_BYTES
    out = raw[start:start + nbytes].view(column.dtype).reshape(shape)
    # the default mode, "raise", would gather into a buffer and copy it to `out`; rows come
    # from a permutation of the window, so they are in range
    return np.take(column, rows, axis=0, out=out, mode="clip")
