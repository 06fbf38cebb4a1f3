"""Rebatcher: chunks of any size in, blocks of whole batches out, windows that respect epochs."""
from __future__ import annotations

import numpy as np

from sparkdl.data.batching import Rebatcher


def _chunks(start, sizes):
    for size in sizes:
        ids = np.arange(start, start + size)
        yield [ids, ids * 10.0]
        start += size


def _run(rebatcher, epochs):
    blocks = []
    for sizes in epochs:
        for chunk in _chunks(0, sizes):
            blocks += rebatcher.add(chunk)
        blocks += rebatcher.end_epoch()
    blocks += rebatcher.finish()
    return blocks


def test_unshuffled_keeps_order_and_cuts_whole_batches():
    blocks = _run(Rebatcher(batch_size=4), [[3, 5, 7, 1, 6]])
    ids = np.concatenate([ids for ids, _ in blocks])
    np.testing.assert_array_equal(ids, np.arange(22))
    assert [len(ids) % 4 for ids, _ in blocks[:-1]] == [0] * (len(blocks) - 1)
    assert len(blocks[-1][0]) == 22 % 4


def test_shuffled_rows_stay_aligned_across_columns():
    blocks = _run(Rebatcher(4, window_rows=10, rng=np.random.default_rng(0)), [[7, 9, 11]])
    ids = np.concatenate([ids for ids, _ in blocks])
    values = np.concatenate([values for _, values in blocks])
    np.testing.assert_array_equal(values, ids * 10.0)
    assert sorted(ids) == list(range(27)) and list(ids) != list(range(27))


def test_epochs_do_not_mix_but_batches_run_on():
    rebatcher = Rebatcher(5, window_rows=100, rng=np.random.default_rng(1))
    blocks = _run(rebatcher, [[6, 6], [6, 6]])  # 12 rows per epoch, batch 5
    ids = np.concatenate([ids for ids, _ in blocks])
    assert sorted(ids[:12]) == list(range(12))
    assert sorted(ids[12:]) == list(range(12))
    assert [len(b[0]) % 5 for b in blocks[:-1]] == [0] * (len(blocks) - 1)


def test_blocks_are_bounded():
    blocks = _run(Rebatcher(4, window_rows=40, rng=np.random.default_rng(2), block_rows=10),
                  [[25, 25]])
    assert max(len(b[0]) for b in blocks) == 8
    assert sorted(np.concatenate([ids for ids, _ in blocks])) == list(range(50))
