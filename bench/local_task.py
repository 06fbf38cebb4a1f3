"""Single-process baselines, run as a fresh process so the framework's thread settings take
effect (TensorFlow or torch: the Keras backend that KERAS_BACKEND picks).

  local_task.py fit DATA.npz MODEL.keras --epochs E --batch-size B --intra N
  local_task.py predict DATA.npz MODEL.keras --batch-size B --intra 1 --repeat R
  horovodrun -np N --gloo -H localhost:N python local_task.py fit ... --horovod
  local_task.py fit ... --slice K/N

Prints one JSON line: seconds inside model.fit / model.predict (median over repeats for predict),
rows processed, and the process's peak RSS. With --horovod each rank trains on its slice of the
rows with sparkdl's Keras 3 distributed optimizer on Horovod (no Spark); rank 0 prints.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time

import keras
from common import COMPILE, LEARNING_RATE, PhaseTimes, load_npz, median


def fit(args: argparse.Namespace, x, y) -> dict | None:
    model = keras.models.load_model(args.model, compile=False)
    optimizer, size, rank = keras.optimizers.Adam(LEARNING_RATE), 1, 0
    if args.slice:  # one of N independent processes: its 1/N of the rows, no communication
        k, n = map(int, args.slice.split("/"))
        x, y = x[k::n], y[k::n]
    if args.horovod:
        from sparkdl.train.backend import horovod

        hvd = horovod()
        size, rank = hvd.size(), hvd.rank()
        x, y = x[rank::size], y[rank::size]
        from sparkdl.train.distributed import broadcast_from_rank0, distributed_optimizer

        optimizer = distributed_optimizer(optimizer)
        optimizer.build(model.trainable_variables)
        broadcast_from_rank0(model.variables, "model")
    model.compile(optimizer=optimizer, **COMPILE)
    timer = PhaseTimes(out_dir="")
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0,
              callbacks=[timer])
    if rank != 0:
        return None
    seconds = timer.times["train_end"] - timer.times["train_begin"]
    return {"seconds": seconds, "samples": len(x) * size * args.epochs,
            "epoch_seconds": timer.times["epochs"]}


def predict(args: argparse.Namespace, x, y) -> dict:
    model = keras.models.load_model(args.model, compile=False)
    model.predict(x[:args.batch_size * 4], batch_size=args.batch_size, verbose=0)  # warm-up
    seconds = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        model.predict(x, batch_size=args.batch_size, verbose=0)
        seconds.append(time.perf_counter() - start)
    return {"seconds": median(seconds), "runs": seconds, "rows": len(x)}


def _threads(intra: int, inter: int) -> None:
    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(intra)
        if inter:
            torch.set_num_interop_threads(inter)
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("task", choices=["fit", "predict"])
    parser.add_argument("data")
    parser.add_argument("model")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--intra", type=int, default=os.cpu_count())
    parser.add_argument("--inter", type=int, default=0, help="0: the framework's default")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--horovod", action="store_true", help="run under horovodrun")
    parser.add_argument("--slice", help="K/N: train on rows K, K+N, ... only")
    args = parser.parse_args()
    if args.horovod:
        from sparkdl.train.backend import horovod

        horovod().init()
    _threads(args.intra, args.inter)
    x, y = load_npz(args.data)
    out = (fit if args.task == "fit" else predict)(args, x, y)
    if out is None:
        return
    out["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
