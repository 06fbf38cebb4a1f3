"""How a split is cut into rank shards and batches: by rows, so that every row counts once.

Rows are laid end to end in (file path, row group) order; rank r of `size` owns the contiguous
range ``[rows * r // size, rows * (r + 1) // size)``, so shard sizes differ by at most one row.
Every rank runs `steps_per_epoch` batches: whole batches, then one last batch with the rest of
its shard (1 to batch_size + 1 rows). Pure functions: no Spark, Parquet or TensorFlow.
"""
from __future__ import annotations

import math
from collections.abc import Sequence


def shard_bounds(rows: int, rank: int, size: int) -> tuple[int, int]:
    """Rank's range ``[begin, end)`` of row positions; ranges are disjoint and cover all rows."""
    if rows < size:
        raise ValueError(f"a split of {rows} row(s) cannot give each of {size} processes a row; "
                         f"expected at least {size} rows (use fewer processes or more data)")
    return rows * rank // size, rows * (rank + 1) // size


def steps_per_epoch(rows: int, batch_size: int, size: int) -> int:
    """Batches every rank runs per epoch: the smallest shard (``rows // size``) in batches, its last
    one partial. A shard one row larger puts that row in its last batch instead of a batch more,
    so all ranks run the same number of steps and no row is dropped or repeated."""
    return max(1, math.ceil(rows // size / batch_size))


def group_slices(group_rows: Sequence[int], begin: int, end: int) -> dict[int, tuple[int, int]]:
    """``{group index: (first, stop)}``: the part of each group, in group-local rows, that falls in
    ``[begin, end)`` when the groups are laid end to end; groups outside the range are left out."""
    slices, offset = {}, 0
    for index, rows in enumerate(group_rows):
        first, stop = max(begin - offset, 0), min(end - offset, rows)
        if first < stop:
            slices[index] = (first, stop)
        offset += rows
    return slices
