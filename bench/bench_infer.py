"""P5 inference: KerasModel.transform rows/s vs single-process model.predict x cores."""
from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from common import PeakMemory, Row, local_task, median, runs


def p5_inference(df: Any, npz: str, keras_model: Any, *, repeat: int, rows: int) -> Row:
    """transform, forced with a noop write (every row's prediction is computed), after one
    warm-up that starts the Python workers and loads the model; the limit is model.predict in
    one process with one intra-op thread (as each Spark task gets), times the cores."""
    cores = os.cpu_count() or 1
    batch_size = keras_model.getBatchSize()

    def transform() -> float:
        start = time.perf_counter()
        keras_model.transform(df).write.format("noop").mode("overwrite").save()
        return time.perf_counter() - start

    cold = transform()
    with PeakMemory() as mem:
        seconds = [transform() for _ in range(repeat)]
    with tempfile.TemporaryDirectory(prefix="bench_p5_") as tmp:
        path = os.path.join(tmp, "model.keras")
        keras_model.getModel().save(path)
        out = local_task("predict", npz, path, "--batch-size", str(batch_size), "--intra", "1",
                         "--inter", "1", "--repeat", str(repeat))
    if "error" in out:
        raise RuntimeError(out["error"])
    ours, one = rows / median(seconds), out["rows"] / out["seconds"]
    return Row("P5 inference (transform, noop write)", ours=f"{ours:,.0f} rows/s",
               limit=f"{one * cores:,.0f} rows/s ({one:,.0f} x {cores} cores)",
               ratio=ours / (one * cores), target=">= 0.8", note=(
                   f"{rows:,} rows, batch {batch_size}; first (cold) transform {cold:.1f} s; "
                   f"runs {runs(seconds)} s vs predict {runs(out['runs'])} s; peak MiB: python "
                   f"worker {mem.peaks.get('python worker', 0):,.0f}, JVM "
                   f"{mem.peaks.get('jvm', 0):,.0f}"),
               data={"seconds": seconds, "predict": out})
