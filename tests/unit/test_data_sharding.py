"""Shard plan: row ranges within one row of each other, equal steps, every row in one batch."""
from __future__ import annotations

import re

import pytest

from sparkdl.data.sharding import group_slices, shard_bounds, steps_per_epoch


@pytest.mark.parametrize("rows, size", [(1000, 2), (1001, 2), (7, 3), (5, 5), (10_007, 4)])
def test_shards_are_disjoint_cover_every_row_and_differ_by_at_most_one(rows, size):
    bounds = [shard_bounds(rows, rank, size) for rank in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == rows
    assert all(a[1] == b[0] for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    lengths = [end - begin for begin, end in bounds]
    assert max(lengths) - min(lengths) <= 1


@pytest.mark.parametrize("rows, size, batch", [(1000, 2, 32), (1025, 2, 32), (1026, 2, 32),
                                               (7, 3, 4), (5, 5, 1), (10_007, 4, 100)])
def test_every_shard_fills_the_same_steps_with_a_last_batch_of_1_to_batch_plus_1(rows, size,
                                                                               batch):
    steps = steps_per_epoch(rows, batch, size)
    for rank in range(size):
        begin, end = shard_bounds(rows, rank, size)
        last = (end - begin) - (steps - 1) * batch
        assert 1 <= last <= batch + 1


def test_group_slices_cut_groups_at_the_range():
    groups = [4, 3, 5, 2]  # rows 0-3 | 4-6 | 7-11 | 12-13
    assert group_slices(groups, 0, 7) == {0: (0, 4), 1: (0, 3)}
    assert group_slices(groups, 5, 13) == {1: (1, 3), 2: (0, 5), 3: (0, 1)}
    covered = [group_slices(groups, *shard_bounds(14, r, 3)) for r in range(3)]
    assert sum(stop - first for part in covered for first, stop in part.values()) == 14


def test_fewer_rows_than_processes_is_an_error():
    with pytest.raises(ValueError, match=re.escape("a split of 2 row(s) cannot give each of 3 "
                                                   "processes a row")):
        shard_bounds(2, 0, 3)
