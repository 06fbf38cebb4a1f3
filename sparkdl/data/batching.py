"""Re-slice column chunks of any size (Parquet row groups) into runs of whole, shuffled batches."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

Columns = list[np.ndarray]


class Rebatcher:
    """Chunks in; blocks of whole batches out (a multiple of `batch_size` rows, contiguous).

    Rows are shuffled within windows of at least `window_rows` rows. A window never spans an
    epoch boundary (`end_epoch`), so every row of an epoch comes out before any row of the next,
    while batches run on across the boundary. Blocks, not single batches, so that the consumer
    pays its per-element overhead once per block.
    """

    def __init__(self, batch_size: int, window_rows: int = 0,
                 rng: np.random.Generator | None = None):
        self._batch_size = batch_size
        self._window_rows = window_rows if rng is not None else 0
        self._rng = rng
        self._pending: list[Columns] = []  # chunks not yet shuffled
        self._pending_rows = 0
        self._head: Columns | None = None  # fewer than batch_size rows, already in output order

    def add(self, columns: Columns) -> Iterator[tuple[np.ndarray, ...]]:
        """Take one chunk (same-length arrays, one per column); yield blocks that are complete."""
        self._pending.append(columns)
        self._pending_rows += len(columns[0])
        if self._pending_rows >= self._window_rows:
            yield from self._drain()

    def end_epoch(self) -> Iterator[tuple[np.ndarray, ...]]:
        """Shuffle and emit what is pending; fewer than batch_size rows stay for the next batch."""
        yield from self._drain()

    def finish(self) -> Iterator[tuple[np.ndarray, ...]]:
        """Emit everything; the last block may hold fewer than batch_size rows."""
        yield from self._drain()
        if self._head is not None:
            yield tuple(self._head)
            self._head = None

    def _drain(self) -> Iterator[tuple[np.ndarray, ...]]:
        if not self._pending:
            return
        columns = [np.concatenate(parts) if len(parts) > 1 else parts[0]
                   for parts in zip(*self._pending)]
        self._pending, self._pending_rows = [], 0
        if self._rng is not None:
            order = self._rng.permutation(len(columns[0]))
            columns = [column[order] for column in columns]
        start = 0
        if self._head is not None:
            start = min(self._batch_size - len(self._head[0]), len(columns[0]))
            first = [np.concatenate([h, c[:start]]) for h, c in zip(self._head, columns)]
            self._head = None
            if len(first[0]) < self._batch_size:
                self._head = first
                return
            yield tuple(first)
        rows = len(columns[0])
        end = start + (rows - start) // self._batch_size * self._batch_size
        if end > start:
            yield tuple(column[start:end] for column in columns)
        if end < rows:
            self._head = [column[end:] for column in columns]
