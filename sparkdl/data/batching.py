"""Re-slice column chunks of any size (Parquet row groups) into runs of whole, shuffled batches."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

Columns = list[np.ndarray]


class Rebatcher:
    """Chunks in; blocks of whole batches out (a multiple of `batch_size`, at most `block_rows`).

    Rows are shuffled within windows of at least `window_rows` rows. A window never spans an
    epoch boundary (`end_epoch`), so every row of an epoch comes out before any row of the next,
    while batches run on across the boundary. Blocks, not single batches, so that the consumer
    pays its per-element overhead once per block.
    """

    def __init__(self, batch_size: int, window_rows: int = 0,
                 rng: np.random.Generator | None = None, block_rows: int | None = None):
        self._batch_size = batch_size
        self._window_rows = window_rows if rng is not None else 0
        self._rng = rng
        self._block_rows = max(1, (block_rows or batch_size) // batch_size) * batch_size
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
                   for parts in zip(*self._pending, strict=True)]
        rows = self._pending_rows
        self._pending, self._pending_rows = [], 0
        # Rows are gathered block by block: small, reusable allocations instead of one
        # window-sized copy (which costs page faults on every window).
        order = self._rng.permutation(rows) if self._rng is not None else None

        def rows_between(begin: int, end: int) -> Columns:
            if order is None:
                return [column[begin:end] for column in columns]
            return [column[order[begin:end]] for column in columns]

        start = 0
        if self._head is not None:
            start = min(self._batch_size - len(self._head[0]), rows)
            first = [np.concatenate([head, part]) for head, part
                     in zip(self._head, rows_between(0, start), strict=True)]
            self._head = None
            if len(first[0]) < self._batch_size:
                self._head = first
                return
            yield tuple(first)
        end = start + (rows - start) // self._batch_size * self._batch_size
        for begin in range(start, end, self._block_rows):
            yield tuple(rows_between(begin, min(begin + self._block_rows, end)))
        if end < rows:
            self._head = rows_between(end, rows)
