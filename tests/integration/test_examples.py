"""The example scripts run as a user runs them (`python examples/X.py ...`, Spark local[2]):
exit code 0, one progress line per epoch, a held-out metric that beats a trivial baseline, and
a saved PipelineModel that loads back with the same predictions. (tabular_regression.py is run
the same way on the standalone cluster: tests/cluster/test_cluster_examples.py.)"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.own_spark

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 240
TAIL_LINES = 40


def run_example(script: str, tmp_path: Path, epochs: int) -> str:
    """Run examples/`script` in a fresh Python with its own local[2] Spark; return its stdout."""
    env = {k: v for k, v in os.environ.items()
           # a gateway inherited from a Spark in this process would be joined instead of a new one
           if k not in ("PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET")}
    env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
               TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, str(REPO / "examples" / script), "--master", "local[2]",
           "--num-proc", "2", "--epochs", str(epochs), "--store", str(tmp_path / "store"),
           "--model-path", str(tmp_path / "model")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-TAIL_LINES:])
    assert proc.returncode == 0, f"{script} exited with {proc.returncode}:\n{tail}"
    return proc.stdout


def check_common_output(out: str, tmp_path: Path, epochs: int) -> None:
    """Progress for every epoch, and the PipelineModel saved where --model-path says."""
    lines = re.findall(r"^Epoch (\d+)/(\d+) - loss: ", out, re.M)
    assert lines == [(str(i), str(epochs)) for i in range(1, epochs + 1)], out
    assert "reloaded it and got the same predictions" in out, out
    assert (tmp_path / "model" / "metadata").is_dir() and (tmp_path / "model" / "stages").is_dir()


def metric(out: str, name: str) -> float:
    match = re.search(rf"^{name}: (\d+\.\d+)", out, re.M)
    assert match, f"no '{name}: <value>' line in:\n{out}"
    return float(match.group(1))


def test_multi_input_digits(tmp_path):
    out = run_example("multi_input.py", tmp_path, epochs=4)
    check_common_output(out, tmp_path, epochs=4)
    assert metric(out, "held-out accuracy") > 0.85  # 10 balanced classes: chance is 0.1


def test_text_classification_on_a_string_column(tmp_path):
    out = run_example("text_classification.py", tmp_path, epochs=2)
    check_common_output(out, tmp_path, epochs=2)
    assert metric(out, "held-out accuracy") > 0.85  # chance is 0.5; 5% of labels are wrong
