"""P3 fit overhead, P4 training efficiency, P6 scaling: sparkdl fits timed phase by phase.

Phases come from wall-clock marks: on the driver around `materialize` and `sparkdl.launch.run`
(wrapped for the duration of a fit), and on each rank from a `PhaseTimes` Keras callback.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import keras
from common import (
    COMPILE,
    LEARNING_RATE,
    PeakMemory,
    PhaseTimes,
    Row,
    local_task,
    median,
    read_phase_times,
    runs,
)

from sparkdl import KerasEstimator, Store


@dataclass
class FitRun:
    """One sparkdl fit: wall time, phases (they add up to it), time inside model.fit on rank 0."""

    wall: float
    phases: dict[str, float]
    in_fit: float
    samples: int  # rows trained, all ranks together
    rank_maxrss_mib: float
    epoch_seconds: list[float]
    model: Any


def sparkdl_fit(df: Any, model: Any, *, num_proc: int, epochs: int, batch_size: int,
                pin_cpus: Sequence[int] | None = None, accumulate: int | None = None) -> FitRun:
    """Fit on `df` with a fresh store (so materialisation is part of it, as on a first fit);
    `accumulate`: Keras' gradient_accumulation_steps."""
    with tempfile.TemporaryDirectory(prefix="bench_fit_") as tmp:
        timing = os.path.join(tmp, "timing")
        optimizer = keras.optimizers.Adam(LEARNING_RATE, gradient_accumulation_steps=accumulate)
        est = KerasEstimator(
            model=model, optimizer=optimizer, **COMPILE,
            feature_cols=["features"], label_cols=["label"],
            store=Store.create(os.path.join(tmp, "store")), num_proc=num_proc,
            batch_size=batch_size, epochs=epochs, verbose=0, random_seed=1,
            callbacks=[PhaseTimes(timing, pin_cpus)])
        marks: dict[str, float] = {}
        with _driver_marks(marks):
            marks["start"] = time.time()
            fitted = est.fit(df)
            marks["end"] = time.time()
        ranks = read_phase_times(timing)
    r0 = ranks[0]
    return FitRun(wall=marks["end"] - marks["start"], phases=_phases(marks, r0),
                  in_fit=r0["train_end"] - r0["train_begin"],
                  samples=r0["steps"] * batch_size * num_proc * epochs,
                  rank_maxrss_mib=max(r["maxrss_mib"] for r in ranks.values()),
                  epoch_seconds=r0["epochs"], model=fitted)


@contextlib.contextmanager
def _driver_marks(marks: dict[str, float]) -> Iterator[None]:
    """Record when materialize and the barrier job start and end (KerasEstimator._fit imports
    both at call time, so wrapping the module attributes is enough)."""
    import sparkdl.data.materialize as mat_module
    import sparkdl.launch as launch_module

    def wrap(fn: Any, name: str) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            marks[f"{name}_start"] = time.time()
            try:
                return fn(*args, **kwargs)
            finally:
                marks[f"{name}_end"] = time.time()
        return timed

    originals = mat_module.materialize, launch_module.run
    mat_module.materialize = wrap(originals[0], "materialize")
    launch_module.run = wrap(originals[1], "run")
    try:
        yield
    finally:
        mat_module.materialize, launch_module.run = originals


def _phases(m: dict[str, float], r0: dict[str, Any]) -> dict[str, float]:
    """Consecutive intervals from fit start to fit end; missing marks fold into the next phase."""
    points = [("driver checks", m.get("materialize_start")),
              ("materialise", m.get("materialize_end")),
              ("driver checks", m.get("run_start")),
              ("launch (job, rendezvous, rank process)", r0.get("created")),
              ("rank: python + TF import + payload", r0.get("unpickled")),
              ("rank: hvd.init, model, datasets", r0.get("train_begin")),
              ("model.fit", r0.get("train_end")),
              ("rank: after fit (logs, model bytes, exit)", r0.get("exit")),
              ("result back to the driver", m.get("run_end")),
              ("driver: KerasModel", m["end"])]
    phases: dict[str, float] = {}
    last = m["start"]
    for name, t in points:
        if t is None:
            continue
        phases[name] = phases.get(name, 0.0) + (t - last)
        last = t
    return phases


def _model_file(model: Any, folder: str, name: str) -> str:
    path = os.path.join(folder, f"{name}.keras")
    model.save(path)
    return path


# --- P3 -------------------------------------------------------------------------------------

def p3_fit_overhead(df: Any, make_model: Any, *, repeat: int, batch_size: int) -> Row:
    """fit wall time minus the time inside model.fit, num_proc=2, 1 epoch."""
    fits = [sparkdl_fit(df, make_model(), num_proc=2, epochs=1, batch_size=batch_size)
            for _ in range(repeat)]
    overheads = [f.wall - f.in_fit for f in fits]
    mid = sorted(range(repeat), key=lambda i: overheads[i])[repeat // 2]
    breakdown = ", ".join(f"{k} {v:.1f}" for k, v in fits[mid].phases.items())
    return Row("P3 fit overhead (num_proc=2, 1 epoch)",
               ours=f"{median(overheads):.1f} s (fit {median([f.wall for f in fits]):.1f} s)",
               limit="0 s", target="<= 4 s", checked=median(overheads), note=(
                   f"overhead runs {runs(overheads)} s; phases of the median run (s): "
                   f"{breakdown}"),
               data={"overhead": median(overheads), "wall": median([f.wall for f in fits]),
                     "phases": fits[mid].phases, "target_s": 4.0})


# --- P4 -------------------------------------------------------------------------------------

def p4_training(df: Any, npz: str, make_model: Any, *, repeat: int, epochs: int,
                batch_size: int) -> tuple[list[Row], Any]:
    """sparkdl num_proc=1 samples/s (inside model.fit and end to end) vs model.fit on numpy.

    The baseline uses the rank's thread setting (intra-op = cores). Returns rows and a model.
    """
    cores = os.cpu_count() or 1
    ours, base, walls, peaks, rank_rss = [], [], [], [], []
    fitted = None
    with tempfile.TemporaryDirectory(prefix="bench_p4_") as tmp:
        initial = _model_file(make_model(), tmp, "initial")
        for _ in range(repeat):  # alternate, so load changes hit both sides alike
            with PeakMemory() as mem:
                run = sparkdl_fit(df, make_model(), num_proc=1, epochs=epochs,
                                  batch_size=batch_size)
            peaks.append(mem.peaks)
            rank_rss.append(max(run.rank_maxrss_mib, mem.peaks.get("rank", 0.0)))
            ours.append(run.samples / run.in_fit)
            walls.append(run.samples / run.wall)
            fitted = run.model
            out = local_task("fit", npz, initial, "--epochs", str(epochs), "--batch-size",
                             str(batch_size), "--intra", str(cores))
            if "error" in out:
                raise RuntimeError(out["error"])
            base.append(out["samples"] / out["seconds"])
    ratio = median(ours) / median(base)
    rows = [
        Row("P4 training, in model.fit (num_proc=1)", ours=f"{median(ours):,.0f} samples/s",
            limit=f"{median(base):,.0f} samples/s", ratio=ratio, target=">= 0.95",
            note=(f"limit: model.fit on the same rows as numpy in one process, intra-op "
                  f"threads {cores}; runs ours {runs(ours)} vs {runs(base)} samples/s"),
            data={"ours": ours, "base": base}),
        Row("P4 training, end to end (fit wall)", ours=f"{median(walls):,.0f} samples/s",
            limit=f"{median(base):,.0f} samples/s", ratio=median(walls) / median(base),
            note="fit wall includes materialise, launch and start-up (see P3)"),
        Row("P4 peak memory (MiB)", ours=(
            f"driver {median([p.get('driver', 0) for p in peaks]):,.0f}, "
            f"JVM {median([p.get('jvm', 0) for p in peaks]):,.0f}, "
            f"rank {median(rank_rss):,.0f}"),
            limit=f"model.fit process {out['maxrss_mib']:,.0f}"),
    ]
    return rows, fitted


# --- P6 -------------------------------------------------------------------------------------

ACCUMULATE = 4  # gradient_accumulation_steps of P6's accumulating variant


def p6_scaling(df: Any, npz: str, make_model: Any, *, repeat: int, epochs: int,
               batch_size: int, unpinned_one: float | None = None) -> list[Row]:
    """Samples/s inside model.fit, num_proc=2 vs num_proc=1, one core per rank.

    The worker gives each rank cores // local_size intra-op threads, so num_proc=2 runs one
    thread per rank; the num_proc=1 rank is pinned to one core (all its threads) to match.
    The same pair again with Keras' gradient accumulation. References, on numpy data without
    Spark: horovodrun (what Horovod itself reaches), and two independent processes, one per
    core, each on half the rows (what the machine allows)."""
    one, two, acc_one, acc_two, hvd_one, hvd_two, free_two = [], [], [], [], [], [], []
    horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
    with tempfile.TemporaryDirectory(prefix="bench_p6_") as tmp:
        initial = _model_file(make_model(), tmp, "initial")
        task = ("fit", npz, initial, "--epochs", str(epochs), "--batch-size", str(batch_size),
                "--intra", "1")
        for _ in range(repeat):
            for accumulate, one_, two_ in [(None, one, two), (ACCUMULATE, acc_one, acc_two)]:
                for num_proc, out in [(1, one_), (2, two_)]:
                    run = sparkdl_fit(df, make_model(), num_proc=num_proc, epochs=epochs,
                                      batch_size=batch_size, accumulate=accumulate,
                                      pin_cpus=[0] if num_proc == 1 else None)
                    out.append(run.samples / run.in_fit)
            for out, runs_ in [(local_task(*task, launcher=["taskset", "-c", "0"]), hvd_one),
                               (local_task(*task, "--horovod", launcher=[
                                   horovodrun, "-np", "2", "--gloo", "-H", "localhost:2"]),
                                hvd_two)]:
                if "error" in out:
                    raise RuntimeError(out["error"])
                runs_.append(out["samples"] / out["seconds"])
            with ThreadPoolExecutor(2) as pool:  # side by side, no communication
                outs = list(pool.map(lambda k: local_task(*task, "--slice", f"{k}/2", launcher=[
                    "taskset", "-c", str(k % (os.cpu_count() or 1))]), range(2)))
            for out in outs:
                if "error" in out:
                    raise RuntimeError(out["error"])
            free_two.append(sum(o["samples"] / o["seconds"] for o in outs))
    extra = (f"; vs num_proc=1 unpinned (2 threads, P4): {median(two) / unpinned_one:.2f}"
             if unpinned_one else "")
    return [
        Row("P6 scaling (num_proc=2 / num_proc=1)", ours=f"{median(two):,.0f} samples/s",
            limit=f"{median(one):,.0f} samples/s (num_proc=1)", ratio=median(two) / median(one),
            target=">= 1.6", note=(f"num_proc=1 pinned to one core; runs {runs(two)} vs "
                                   f"{runs(one)} samples/s{extra}"),
            data={"one": one, "two": two}),
        Row(f"P6 with gradient_accumulation_steps={ACCUMULATE} (2 ranks / 1)",
            ours=f"{median(acc_two):,.0f} samples/s",
            limit=f"{median(acc_one):,.0f} samples/s (num_proc=1)",
            ratio=median(acc_two) / median(acc_one), note=(
                f"Keras' gradient accumulation: one allreduce and one update per {ACCUMULATE} "
                f"steps; runs {runs(acc_two)} vs {runs(acc_one)} samples/s"),
            data={"one": acc_one, "two": acc_two}),
        Row("P6 reference: horovodrun, numpy, no Spark", ours=f"{median(hvd_two):,.0f} samples/s",
            limit=f"{median(hvd_one):,.0f} samples/s (1 process)",
            ratio=median(hvd_two) / median(hvd_one), note=(
                f"Horovod's own 2-rank scaling on this machine, same model and batch; runs "
                f"{runs(hvd_two)} vs {runs(hvd_one)} samples/s"),
            data={"one": hvd_one, "two": hvd_two}),
        Row("P6 reference: 2 independent processes", ours=f"{median(free_two):,.0f} samples/s",
            limit=f"{median(hvd_one):,.0f} samples/s (1 process)",
            ratio=median(free_two) / median(hvd_one), note=(
                "two model.fit processes side by side, one per core, half the rows each, no "
                f"communication: the machine's ceiling for 2 ranks; runs {runs(free_two)}"),
            data={"two": free_two}),
    ]
