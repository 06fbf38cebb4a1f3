"""Rebatcher: chunks of any size in, an epoch's batches out, windows that respect epochs."""
from __future__ import annotations

import numpy as np
import pytest

from sparkdl.data.batching import ALIGN_BYTES, Rebatcher, _gather


def _chunks(sizes):
    start = 0
    for size in sizes:
        ids = np.arange(start, start + size)
        yield [ids, ids * 10.0]
        start += size


def _epochs(rebatcher, epochs):
    """Per epoch, the list of (ids, values) batches the rebatcher gave."""
    out = []
    for sizes in epochs:
        blocks = []
        for chunk in _chunks(sizes):
            blocks += rebatcher.add(chunk)
        blocks += rebatcher.end_epoch()
        out.append([(ids, values) for block_ids, block_values in blocks
                    for ids, values in zip(block_ids, block_values, strict=True)])
    return out


@pytest.mark.parametrize("rows, batch, steps, last", [(21, 4, 5, 5), (20, 4, 5, 4), (3, 4, 1, 3)])
def test_unshuffled_keeps_order_and_makes_exactly_steps_batches(rows, batch, steps, last):
    [batches] = _epochs(Rebatcher(batch, steps), [[3, 5, 7, 1, rows - 16] if rows > 16
                                                  else [rows]])
    assert [len(ids) for ids, _ in batches] == [batch] * (steps - 1) + [last]
    np.testing.assert_array_equal(np.concatenate([ids for ids, _ in batches]), np.arange(rows))


def test_shuffled_rows_stay_aligned_across_columns():
    [batches] = _epochs(Rebatcher(4, 7, window_rows=10, rng=np.random.default_rng(0)),
                        [[7, 9, 11]])
    ids = np.concatenate([ids for ids, _ in batches])
    values = np.concatenate([values for _, values in batches])
    np.testing.assert_array_equal(values, ids * 10.0)
    assert sorted(ids) == list(range(27)) and list(ids) != list(range(27))
    assert [len(b) for b, _ in batches] == [4] * 6 + [3]


def test_every_epoch_is_its_rows_once_in_the_same_number_of_batches():
    rebatcher = Rebatcher(5, 2, window_rows=4, rng=np.random.default_rng(1))
    epochs = _epochs(rebatcher, [[6, 5], [6, 5], [6, 5]])  # 11 rows, batch 5: 5 then 6
    for batches in epochs:
        assert [len(ids) for ids, _ in batches] == [5, 6]
        assert sorted(np.concatenate([ids for ids, _ in batches])) == list(range(11))
    assert not np.array_equal(epochs[0][0][0], epochs[1][0][0])  # reshuffled


def test_blocks_are_bounded_and_shaped_as_batches():
    rebatcher = Rebatcher(4, 13, window_rows=40, rng=np.random.default_rng(2), block_rows=10)
    blocks = [*rebatcher.add([np.arange(25), np.arange(25.0)]),
              *rebatcher.add([np.arange(25, 50), np.arange(25.0, 50.0)]),
              *rebatcher.end_epoch()]
    assert [b[0].shape for b in blocks] == [(2, 4)] * 6 + [(1, 2)]
    assert sorted(np.concatenate([b[0].ravel() for b in blocks])) == list(range(50))


@pytest.mark.parametrize("column", [
    np.arange(60, dtype=np.float32).reshape(10, 6),  # vectors
    np.arange(10, dtype=np.int64),  # scalars
    np.array([f"w{i}" for i in range(10)]),  # fixed-width strings
    np.array([f"w{i}" * i for i in range(10)], dtype=object),  # Python strings
], ids=["float32 vectors", "int64", "unicode", "object"])
def test_gathered_rows_are_the_columns_rows_in_aligned_arrays(column):
    rows = np.array([7, 0, 9, 3])
    gathered = _gather(column, rows)
    assert gathered.dtype == column.dtype and gathered.shape == (4, *column.shape[1:])
    assert (gathered == column[rows]).all()
    if not column.dtype.hasobject:  # TensorFlow then takes it with one copy less
        assert gathered.ctypes.data % ALIGN_BYTES == 0
    assert _gather(column, rows[:0]).shape == (0, *column.shape[1:])
