"""Every benchmark stage, then one table: sparkdl against each stage's limit and against
horovod.spark.keras (`make bench`, or `.venv/bin/python bench/run_all.py [--quick]`). Each run
is also kept as bench/out/bench-<UTC time>.md with the date, commit and machine.

Each ratio is measured in the same run on the same data; figures are medians of --repeat runs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
# executors, ranks and the peer's ranks import bench modules (the timing callback) by name
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in [BENCH_DIR, os.environ.get("PYTHONPATH", "")] if p)

from common import (  # noqa: E402
    ROOT,
    PeakMemory,
    Row,
    features_df,
    format_table,
    make_dataset,
    median,
    mlp,
    run_json,
    runs,
)

SIZES = {  # full: the sizes, ~11 min on 2 cores; quick: ~5 min
    "full": dict(p1_rows=1_000_000, rows=204_800, p3_rows=20_000, epochs=3, repeat=3,
                 peer_rows=5_000, peer_repeat=3),
    "quick": dict(p1_rows=200_000, rows=51_200, p3_rows=20_000, epochs=2, repeat=3,
                  peer_rows=2_000, peer_repeat=1),
}
DIM, BATCH, READ_BATCH = 64, 256, 1024
STAGES = ("p1", "p2", "p3", "p4", "p5", "p6", "peer")
SMALL, CPU_BOUND = [16], [512, 512]  # hidden layers: P3's small model, P4-P6's MLP


def main() -> None:
    args = _parse_args()
    size = {**SIZES["quick" if args.quick else "full"],
            **({"repeat": args.repeat} if args.repeat else {})}
    stages = set(args.stages.split(",")) if args.stages else set(STAGES)
    started, load = time.time(), os.getloadavg()[0]
    spark = _spark(args.master)
    if args.scale:
        from bench_scale import SIZES as SCALE_SIZES
        from bench_scale import scale_curve

        table = scale_curve(spark, SCALE_SIZES, os.path.join(BENCH_DIR, "out"))
        spark.stop()
        print(f"\nsparkdl scale curve ({args.master}, {os.cpu_count()} cores, one run each; "
              f"{time.time() - started:.0f} s)\n\n{table}")
        return
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        if stages & {"p1", "p2"}:
            rows += data_stages(spark, size, stages, tmp)
        if stages & {"p3", "p4", "p5", "p6", "peer"}:
            rows_, peer_spec = model_stages(spark, size, stages, tmp)
            rows += rows_
        spark.stop()
        if "peer" in stages:
            _progress("peer: horovod.spark.keras.KerasEstimator in .venv-peer")
            add_peer(rows, run_peer(peer_spec, tmp, args.master))
    import keras

    header = (f"sparkdl benchmarks ({'quick' if args.quick else 'full'}, {args.master}, "
              f"Keras on {keras.backend.backend()}, {os.cpu_count()} cores, median of "
              f"{size['repeat']}; {time.time() - started:.0f} s; load average {load:.1f} at "
              f"start, {os.getloadavg()[0]:.1f} at end)")
    table = format_table(rows)
    print(f"\n{header}\n\n{table}")
    print(f"\nwritten to {_write_results(header, table, started)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.__dict__ | {"verdict": r.verdict} for r in rows], f, indent=1,
                      default=str)


def data_stages(spark: Any, size: dict[str, Any], stages: set[str], tmp: str) -> list[Row]:
    """P1 and P2 through bench_data's own functions; its `_report` is wrapped to keep figures."""
    import bench_data
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.sql import functions as F

    from sparkdl.store import Store

    _progress(f"P1/P2: materialise and read {size['p1_rows']:,} rows x {DIM}")
    recorded: dict[str, dict[str, Any]] = {}
    report = bench_data._report

    def record(what: str, name: str, n: int, seconds: list[float], baseline: str,
               baseline_seconds: list[float]) -> None:
        recorded[what] = {"rows": n, "ours": list(seconds), "base": list(baseline_seconds),
                          "baseline": baseline}
        report(what, name, n, seconds, baseline, baseline_seconds)

    ns = argparse.Namespace(rows=size["p1_rows"], dim=DIM, repeat=size["repeat"],
                            batch_size=READ_BATCH, num_proc=2, master=None)
    source = bench_data._cached(spark.range(ns.rows).select(  # as bench_data.main builds it
        array_to_vector(F.array(*[F.rand(i) for i in range(DIM)])).alias("features"),
        (F.col("id") % 10).cast("double").alias("label")))
    converted = bench_data._cached(source.select(
        vector_to_array("features", "float32").alias("features"),
        F.col("label").cast("float").alias("label")))
    store = Store.create(os.path.join(tmp, "p1_store"))
    bench_data._report = record
    try:  # its own lines go to stderr with the progress, so stdout ends with the table
        with PeakMemory() as mem, contextlib.redirect_stdout(sys.stderr):
            meta = bench_data._bench_writes(ns, source, converted, store,
                                            os.path.join(tmp, "p1_plain"))
        if "p2" in stages:
            with contextlib.redirect_stdout(sys.stderr):
                bench_data._bench_reads(ns, store, meta)
                bench_data._bench_string_reads(ns, spark, store)
    finally:
        bench_data._report = report
        source.unpersist()
        converted.unpersist()
    rows = []
    for what, r in recorded.items():
        ours, base = median(r["ours"]), median(r["base"])
        if what == "write":
            rows.append(Row(f"P1 materialise ({r['rows']:,} x {DIM} vector)",
                            ours=f"{ours:.2f} s", limit=f"{base:.2f} s", ratio=ours / base,
                            target="<= 1.2", note=(
                                f"time ratio; limit: df.write.parquet of the converted columns; "
                                f"runs {runs(r['ours'])} vs {runs(r['base'])} s; peak MiB "
                                f"(both writers): driver {mem.peaks.get('driver', 0):,.0f}, "
                                f"JVM {mem.peaks.get('jvm', 0):,.0f}")))
        else:
            part = not what.startswith("read (shuffle=")  # where the reader's time goes
            rows.append(Row(f"P2 {what.replace('read ', 'reader ')}",
                            ours=f"{r['rows'] / ours:,.0f} rows/s",
                            limit=f"{r['rows'] / base:,.0f} rows/s", ratio=base / ours,
                            target="" if part else ">= 0.7", note=(
                                f"limit: {r['baseline']}; runs {runs(r['ours'])} vs "
                                f"{runs(r['base'])} s")))
    return rows


def model_stages(spark: Any, size: dict[str, Any], stages: set[str], tmp: str
                 ) -> tuple[list[Row], dict[str, Any]]:
    """P3-P6 on generated data; returns the rows and the peer's task spec (same data, models)."""
    from bench_infer import p5_inference, p5_predict_batch_udf
    from bench_train import p3_fit_overhead, p4_training, p6_scaling

    npz, parquet = make_dataset(os.path.join(tmp, "p4"), size["rows"], DIM, seed=0)
    _, p3_parquet = make_dataset(os.path.join(tmp, "p3"), size["p3_rows"], DIM, seed=1)

    def small() -> Any:
        return mlp(DIM, SMALL)

    def cpu_bound() -> Any:
        return mlp(DIM, CPU_BOUND)

    repeat, epochs, rows = size["repeat"], size["epochs"], []
    df, fitted, in_fit_one = features_df(spark, parquet), None, None
    if "p3" in stages:
        _progress(f"P3: fit overhead, {size['p3_rows']:,} rows, num_proc=2, 1 epoch")
        p3_df = features_df(spark, p3_parquet)
        rows.append(p3_fit_overhead(p3_df, small, repeat=repeat, batch_size=BATCH))
        p3_df.unpersist()
    if stages & {"p4", "p5"}:
        _progress(f"P4: training, {size['rows']:,} rows, num_proc=1, {epochs} epochs")
        rows_, fitted = p4_training(df, npz, cpu_bound, repeat=repeat if "p4" in stages else 1,
                                    epochs=epochs, batch_size=BATCH)
        in_fit_one = median(rows_[0].data["ours"])
        rows += rows_ if "p4" in stages else []
    if "p5" in stages:
        _progress(f"P5: transform {size['rows']:,} rows")
        rows.append(p5_inference(df, npz, fitted, repeat=repeat, rows=size["rows"]))
        rows.append(p5_predict_batch_udf(df, fitted, repeat=repeat, rows=size["rows"]))
    if "p6" in stages:
        _progress(f"P6: scaling, num_proc=2 vs 1, {epochs} epochs")
        rows += p6_scaling(df, npz, cpu_bound, repeat=repeat, epochs=epochs, batch_size=BATCH,
                           unpinned_one=in_fit_one)
    df.unpersist()
    peer_spec = {
        # the architecture, not a .keras file: the peer runs Keras 2, which cannot load Keras 3's
        "fits": {"p3": {"parquet": p3_parquet, "dim": DIM, "hidden": SMALL,
                        "num_proc": 2, "epochs": 1, "batch_size": BATCH},
                 "p4": {"parquet": parquet, "dim": DIM, "hidden": CPU_BOUND,
                        "num_proc": 1, "epochs": epochs, "batch_size": BATCH}},
        "transform": {"parquet": parquet, "rows": size["peer_rows"],
                      "repeat": size["peer_repeat"], "model_from": "p4"}}
    return rows, peer_spec


def run_peer(spec: dict[str, Any], tmp: str, master: str) -> dict[str, Any]:
    """peer_task.py in .venv-peer (bench/peer_venv.sh makes it, or returns at once when done)."""
    python = os.path.join(ROOT, ".venv-peer", "bin", "python")
    code = os.system(f"bash {os.path.join(BENCH_DIR, 'peer_venv.sh')} >&2")
    if code != 0 or not os.path.exists(python):
        return {"error": "could not set up .venv-peer: bench/peer_venv.sh failed (see stderr)"}
    path = os.path.join(tmp, "peer_spec.json")
    with open(path, "w") as f:
        json.dump({**spec, "master": master}, f)
    return run_json([python, os.path.join(BENCH_DIR, "peer_task.py"), path],
                    env={"PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python})


def add_peer(rows: list[Row], peer: dict[str, Any]) -> None:
    """Put the peer's figures (or its error) next to ours, in the peer column."""
    def cell(task: str, figure: Any) -> str:
        result = peer.get(task, peer)
        if "error" in result:
            return "failed: " + result["error"].splitlines()[0][:150]
        return figure(result)

    for row in rows:
        key = row.stage.split()[0]
        if key == "P3":
            row.peer = cell("p3", lambda r: f"{_wall(r) - _in_fit(r):.1f} s (fit {_wall(r):.1f} s)")
        elif row.stage.startswith("P4 training, in"):
            row.peer = cell("p4", lambda r: f"{_samples(r) / _in_fit(r):,.0f} samples/s")
        elif row.stage.startswith("P4 training, end"):
            row.peer = cell("p4", lambda r: f"{_samples(r) / _wall(r):,.0f} samples/s")
        elif row.stage.startswith("P5 inference"):
            row.peer = cell("transform", lambda r: (
                f"{r['rows'] / median(r['seconds']):,.0f} rows/s ({r['rows']:,} rows)"))
    errors = {k: v for k, v in peer.items() if isinstance(v, dict) and "error" in v}
    if "error" in peer:
        errors["peer"] = peer
    for task, result in errors.items():
        rows.append(Row(f"peer {task} failed", ours="", note=f"{result['error']} "
                        f"({result.get('last', '')})"))


def _wall(r: dict[str, Any]) -> float:
    return r["end"] - r["start"]


def _in_fit(r: dict[str, Any]) -> float:
    return r["ranks"]["0"]["train_end"] - r["ranks"]["0"]["train_begin"]


def _samples(r: dict[str, Any]) -> float:
    return r["ranks"]["0"]["steps"] * r["batch_size"] * r["num_proc"] * r["epochs"]


def _spark(master: str) -> Any:
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(master).appName("sparkdl-bench")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.memory", "6g").config("spark.sql.shuffle.partitions", "4")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _write_results(header: str, table: str, started: float) -> str:
    """Keep the run as bench/out/bench-<UTC start>.md: when, which commit, which machine, the
    table. Earlier runs stay there, not in the docs."""
    out = os.path.join(BENCH_DIR, "out")
    os.makedirs(out, exist_ok=True)
    when = time.gmtime(started)
    path = os.path.join(out, f"bench-{time.strftime('%Y%m%d-%H%M%S', when)}.md")
    with open(path, "w") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M UTC', when)}, commit {_commit()}, "
                f"{_machine()}\n\n{header}\n\n{table}\n")
    return path


def _commit() -> str:
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" with local changes" if dirty else "")


def _machine() -> str:
    """CPU model, cores and memory, from /proc where there is one."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} x {model}, {memory:.0f} GiB"


def _progress(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced sizes (a few minutes)")
    parser.add_argument("--repeat", type=int, help="runs per figure (default 3)")
    parser.add_argument("--stages", help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--scale", action="store_true", help="only the scale curve: P1, P2 and "
                        "P5 at 0.2M, 1M and 5M rows (bench/bench_scale.py; PNG in bench/out)")
    return parser.parse_args()


if __name__ == "__main__":
    main()
