"""The example scripts run as `python examples/X.py --master local[2] ...` runs them, in the test
session's Spark (keras_helpers.run_script): a progress line per epoch, a held-out metric that
beats a trivial baseline, and a saved PipelineModel that loads back with the same predictions.
(tabular_regression.py runs as an application of its own, spark-submitted to the standalone
cluster: tests/cluster/test_cluster_examples.py.)"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from keras_helpers import run_script

REPO = Path(__file__).resolve().parents[2]


def run_example(script: str, tmp_path: Path, epochs: int, spark, monkeypatch, capsys) -> str:
    """Run examples/`script` on 2 ranks; return what it printed."""
    return run_script(REPO / "examples" / script,
                      ["--master", "local[2]", "--num-proc", "2", "--epochs", epochs,
                       "--store", tmp_path / "store", "--model-path", tmp_path / "model"],
                      spark, monkeypatch, capsys)


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


def test_multi_input_digits(spark, tmp_path, monkeypatch, capsys):
    out = run_example("multi_input.py", tmp_path, 4, spark, monkeypatch, capsys)
    check_common_output(out, tmp_path, epochs=4)
    assert metric(out, "held-out accuracy") > 0.85  # 10 balanced classes: chance is 0.1


@pytest.mark.tensorflow
def test_text_classification_on_a_string_column(spark, tmp_path, monkeypatch, capsys):
    out = run_example("text_classification.py", tmp_path, 2, spark, monkeypatch, capsys)
    check_common_output(out, tmp_path, epochs=2)
    assert metric(out, "held-out accuracy") > 0.85  # chance is 0.5; 5% of labels are wrong
