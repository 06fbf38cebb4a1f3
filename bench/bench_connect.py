"""A classic session against Spark Connect, in one process and on the same local[2] executors
(the Connect server runs in the classic session's JVM): time to fit, to transform and to fail,
medians of --repeat, with the Connect / classic ratios.

`.venv/bin/python bench/bench_connect.py [--rows 20000] [--epochs 3] [--repeat 3]`
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import features_df, fit_args, make_dataset, median, mlp, timed  # noqa: E402  (sets Spark's env)

_CONNECT_MODE = "SPARK_CONNECT_MODE_ENABLED"  # pyspark's functions follow Connect while set


@contextlib.contextmanager
def connect_mode(on: bool) -> Iterator[None]:
    if on:
        os.environ[_CONNECT_MODE] = "1"
    try:
        yield
    finally:
        os.environ.pop(_CONNECT_MODE, None)


def _fail_on_rank_one() -> None:
    import horovod.tensorflow as hvd

    hvd.init()
    if hvd.rank() == 1:
        raise ValueError("injected")
    import tensorflow as tf

    hvd.allreduce(tf.constant(1.0))


def _expect_error(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # the failure is what is timed
        return
    raise AssertionError("expected an error")


def main() -> None:
    args = fit_args(__doc__)

    import keras
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    import sparkdl
    from sparkdl import KerasEstimator, Store

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    classic = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
               .config("spark.plugins", "org.apache.spark.sql.connect.SparkConnectPlugin")
               .config("spark.connect.grpc.binding.address", "127.0.0.1")
               .config("spark.connect.grpc.binding.port", str(port)).getOrCreate())
    classic.sparkContext.setLogLevel("OFF")  # the failing-rank step would print its task error
    remote = ConnectSession.builder.remote(f"sc://127.0.0.1:{port}").getOrCreate()
    tmp = tempfile.mkdtemp(prefix="sparkdl-bench-connect-")
    _, parquet = make_dataset(os.path.join(tmp, "data"), args.rows, args.dim)
    store = Store.create(os.path.join(tmp, "store"))
    seconds: dict[str, dict[str, list[float]]] = {"classic": {}, "connect": {}}

    def measure(kind: str, spark: Any) -> None:
        with connect_mode(kind == "connect"):
            df = features_df(spark, parquet, partitions=4)
            est = KerasEstimator(model=mlp(args.dim, [64, 64]),
                                 optimizer=keras.optimizers.Adam(1e-3),
                                 loss="binary_crossentropy", feature_cols=["features"],
                                 label_cols=["label"], store=store, num_proc=2, batch_size=128,
                                 epochs=args.epochs, verbose=0)
            out = seconds[kind]
            model = None
            for i in range(args.repeat + 1):  # the first run warms up
                took, model = timed(lambda: est.fit(df))
                if i:
                    out.setdefault("fit", []).append(took)
            for _ in range(args.repeat):
                out.setdefault("transform", []).append(timed(lambda: model.transform(df).agg(
                    F.sum("label__output")).first())[0])
                out.setdefault("error: num_proc above the slots", []).append(
                    timed(lambda: _expect_error(lambda: est.copy().setNumProc(3).fit(df)))[0])
                out.setdefault("error: a rank raises", []).append(timed(lambda: _expect_error(
                    lambda: sparkdl.run(_fail_on_rank_one, num_proc=2)))[0])

    measure("classic", classic)
    measure("connect", remote)
    print(f"{args.rows} rows x {args.dim} floats, {args.epochs} epochs, num_proc=2, local[2]; "
          f"median of {args.repeat} (fit: no cache_key, as users call it)")
    print(f"| {'step':34} | classic | Spark Connect | Connect / classic |")
    print(f"|{'-' * 36}|---------|---------------|-------------------|")
    for step in seconds["classic"]:
        a, b = median(seconds["classic"][step]), median(seconds["connect"][step])
        print(f"| {step:34} | {a:6.2f}s | {b:12.2f}s | {b / a:17.2f} |")
    remote.stop()  # before its server: pyspark 4.3 retries its exit-time call for minutes
    classic.stop()


if __name__ == "__main__":
    main()
