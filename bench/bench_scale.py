"""Scale curve: P1 (materialize), P2 (shard reader, shuffled) and P5 (transform) at growing row
counts x 64 floats, the median of 3 runs each. Cost per row should stay within +-20 % across
sizes and peak memory flat (the reader's is bounded by its shuffle window, not the data).
Prints a table and saves a PNG of rows/s and peak MiB against rows.

    make bench BENCH_ARGS=--scale        # or: .venv/bin/python bench/bench_scale.py --rows ...
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from common import BENCH_DIR, WARM_UP_RUNS, PeakMemory, mlp, run_json

from sparkdl.data.materialize import materialize

DIM = 64
SIZES = (200_000, 1_000_000, 5_000_000)
FLAT = 0.2  # per-row cost within +-20 % of its mean across sizes
REPEAT = 3  # runs per stage and size: a shared VM's speed varies between runs


def scale_curve(spark: Any, sizes: tuple[int, ...], out_dir: str) -> str:
    """Measure every size, save `scale.png` in `out_dir`, return the table as markdown."""
    import keras
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    from sparkdl import KerasEstimator, Store

    def generated(rows: int) -> Any:
        """Rows made as they are read, not cached: the input costs the same per row at any
        size and holds no memory that grows with it."""
        return spark.range(rows).select(
            array_to_vector(F.array(*[F.rand(i) for i in range(DIM)])).alias("features"),
            (F.col("id") % 2).cast("double").alias("label"))

    figures: dict[str, dict[int, tuple[float, float]]] = {"P1": {}, "P2": {}, "P5": {}}
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        # warm-up (see WARM_UP_RUNS), Python workers with the model
        store = Store.create(os.path.join(tmp, "warm-up"))
        for _ in range(WARM_UP_RUNS):
            materialize(generated(200_000), store, "features", "label", num_proc=2).release()
        model = KerasEstimator(
            model=mlp(DIM, [512, 512]), optimizer=keras.optimizers.Adam(1e-3),
            loss="binary_crossentropy", feature_cols=["features"], label_cols=["label"],
            store=store, num_proc=1, batch_size=256, epochs=1, verbose=0).fit(generated(50_000))
        # the transform's JVM side needs its own warm-up runs: after a single one, converting
        # the vectors cost 1.17 us per row at the first size measured and 0.76 at its next runs
        for _ in range(WARM_UP_RUNS):
            model.transform(generated(200_000)).write.format("noop").mode("overwrite").save()
        for rows in sizes:
            for stage, figure in _one_size(rows, Store.create(os.path.join(tmp, str(rows))),
                                           generated(rows), model).items():
                figures[stage][rows] = figure
    os.makedirs(out_dir, exist_ok=True)
    plot = os.path.join(out_dir, "scale.png")
    _plot(figures, sizes, plot)
    return _table(figures, sizes) + f"\n\nplot: {plot}"


def _one_size(rows: int, store: Any, source: Any, model: Any) -> dict[str, tuple[float, float]]:
    """P1, P2 and P5 on `rows` rows: (rows/s, peak MiB) each."""

    metas: list[Any] = []
    p1 = _measured(rows, "jvm", lambda: metas.append(
        materialize(source, store, "features", "label", num_proc=2)))
    for meta in metas[:-1]:
        meta.release()
    meta = metas[-1]

    p2 = _read_in_a_rank_process(rows, store, meta.key)
    p5 = _measured(rows, "python worker", lambda: model.transform(
        source).write.format("noop").mode("overwrite").save())
    meta.release()
    return {"P1": p1, "P2": p2, "P5": p5}


def _read_in_a_rank_process(rows: int, store: Any, key: str) -> tuple[float, float]:
    """rows/s of the median of REPEAT shuffled passes and the peak MiB of a fresh process that
    only reads (`reader_task.py`), as a rank does: not the driver, whose memory holds what every
    earlier stage left."""
    out = run_json([sys.executable, os.path.join(BENCH_DIR, "reader_task.py"), store.url, key,
                    "--batch-size", "1024", "--repeat", str(REPEAT)])
    if "error" in out:
        raise RuntimeError(out["error"])
    if out["rows"] != rows:
        raise RuntimeError(f"the reader read {out['rows']} rows; expected {rows}")
    return rows / statistics.median(out["seconds"]), out["maxrss_mib"]


def _measured(rows: int, role: str, run: Callable[[], None]) -> tuple[float, float]:
    """rows/s of the median of REPEAT runs, and the peak MiB of `role` over them."""
    seconds, peak = [], 0.0
    for _ in range(REPEAT):
        with PeakMemory() as mem:
            start = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - start)
        peak = max(peak, mem.peaks.get(role, 0.0))
    return rows / statistics.median(seconds), peak


_WHAT = {"P1": ("materialize", "JVM"),
         "P2": ("shard reader, shuffled", "reader process"), "P5": ("transform", "Python worker")}


def _table(figures: dict[str, dict[int, tuple[float, float]]], sizes: tuple[int, ...]) -> str:
    """Per stage: rows/s, us per row and peak MiB at each size; the spread of the cost per row
    (and, for the reader, of its peak memory) around their means, against +-20 %; the cost split
    into a fixed part per run and a part per row."""
    lines = ["| stage | " + " | ".join(f"{n:,} rows" for n in sizes)
             + " | per-row cost | fixed + per row | peak memory |",
             "|---|" + "---|" * (len(sizes) + 3)]
    for stage, by_size in figures.items():
        name, where = _WHAT[stage]
        cost, memory = (_spread([1e6 / by_size[n][0] for n in sizes]),
                        _spread([by_size[n][1] for n in sizes]))
        cells = [f"{by_size[n][0]:,.0f}/s, {1e6 / by_size[n][0]:.1f} us, {by_size[n][1]:,.0f} "
                 f"MiB" for n in sizes]
        memory_cell = f"+-{memory:.0%} " + (("ok" if memory <= FLAT else "MISSED")
                                            if stage == "P2" else "(not a target)")
        split = _fixed_and_per_row([(n, n / by_size[n][0]) for n in sizes])
        split_cell = f"{split[0]:.2f} s + {split[1] * 1e6:.2f} us" if split else "n/a"
        lines.append(f"| {stage} {name} (peak: {where}) | " + " | ".join(cells)
                     + f" | +-{cost:.0%} {'ok' if cost <= FLAT else 'MISSED'} | {split_cell} | "
                     f"{memory_cell} |")
    return "\n".join(lines)


def _fixed_and_per_row(runs: list[tuple[int, float]]) -> tuple[float, float] | None:
    """Least-squares fit of seconds = fixed + rows x per_row over (rows, seconds): what of the
    per-row spread a cost paid once per run explains. None for fewer than two sizes."""
    if len({n for n, _ in runs}) < 2:
        return None
    per_row, fixed = statistics.linear_regression([n for n, _ in runs], [t for _, t in runs])
    return fixed, per_row


def _spread(values: list[float]) -> float:
    """Largest relative distance of a value from the mean."""
    mean = sum(values) / len(values)
    return max(abs(v - mean) / mean for v in values) if mean else 0.0


def _plot(figures: dict[str, dict[int, tuple[float, float]]], sizes: tuple[int, ...],
          path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4))
    for stage, by_size in figures.items():
        label = f"{stage} {_WHAT[stage][0]}"
        speed.plot(sizes, [by_size[n][0] for n in sizes], marker="o", label=label)
        memory.plot(sizes, [by_size[n][1] for n in sizes], marker="o",
                    label=f"{label} ({_WHAT[stage][1]})")
    for axis, title in ((speed, "rows/s"), (memory, "peak MiB")):
        axis.set_xscale("log")
        axis.set_xticks(sizes, [f"{n:,}" for n in sizes])
        axis.minorticks_off()
        axis.set_xlabel("rows (x 64 floats)")
        axis.set_title(title)
        axis.set_ylim(bottom=0)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    from pyspark.sql import SparkSession

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--out", default=os.path.join(BENCH_DIR, "out"))
    args = parser.parse_args()
    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.memory", "6g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    print(scale_curve(spark, tuple(args.rows), args.out))
    spark.stop()


if __name__ == "__main__":
    main()
