"""The shard reader in a fresh process, as a rank runs it: one warm-up pass, then timed passes,
each a newly opened shuffled dataset read once (all rows, one shard).

  reader_task.py STORE_URL DATA_KEY --batch-size 1024 --repeat 3

Prints one JSON line: seconds per timed pass, rows per pass, and the process's peak RSS over
all passes (MiB), TensorFlow included.
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import tensorflow  # noqa: F401  (a rank has it loaded before its reader starts)

from sparkdl import Store
from sparkdl.data.meta import DatasetMeta
from sparkdl.data.reader import open_shard_dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("key")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    store = Store.create(args.store)
    meta = DatasetMeta.load(store, args.key)
    if meta is None:
        raise SystemExit(f"no materialized data under key {args.key!r} in {args.store}")

    def one_pass() -> int:
        return sum(len(labels) for _, labels in open_shard_dataset(
            store.dataset_url(meta.train_path), 0, 1, args.batch_size, meta=meta,
            shuffle=True, num_epochs=1))

    one_pass()
    seconds = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        rows = one_pass()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": seconds, "rows": rows,
                      "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}),
          flush=True)


if __name__ == "__main__":
    main()
