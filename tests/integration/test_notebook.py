"""examples/notebook.ipynb runs headless, cell by cell, in a kernel on this test's Python.

The kernelspec is written into a temporary JUPYTER_PATH inside the test, so a fresh machine
needs nothing registered by hand; it pins the kernel to sys.executable (the venv's Python)
and matplotlib to the inline backend, which renders to PNG without a display.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="needs the [notebook] extra")
nbclient = pytest.importorskip("nbclient", reason="needs the [notebook] extra")

pytestmark = pytest.mark.own_spark

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebook.ipynb"
KERNEL = "sparkdl-test-venv"
CELL_TIMEOUT_S = 300


def _kernelspec(jupyter_path: Path, tmp: Path) -> None:
    """A kernelspec named KERNEL that runs ipykernel on this Python."""
    spec_dir = jupyter_path / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "sparkdl (test venv)",
        "language": "python",
        "env": {
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TMPDIR": str(tmp),  # the notebook's local store (tempfile.mkdtemp) goes here
        },
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))


def _text(cell) -> str:
    """A code cell's stream and text/plain output, joined."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream" and out["name"] == "stdout":
            parts.append(out["text"])
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


def _cell_with(nb, needle: str):
    cells = [c for c in nb.cells if c.cell_type == "code" and needle in c.source]
    assert len(cells) == 1, f"expected one code cell containing {needle!r}"
    return cells[0]


def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    _kernelspec(tmp_path / "jupyter", tmp)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT_S,
                                     startup_timeout=120,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any cell's error

    # progress: a bar per epoch in the fit cell, updated in place; its final state is full and
    # shows the epoch's metrics
    bars = [out["data"] for out in _cell_with(nb, "pipeline.fit(train)").outputs
            if out["output_type"] == "display_data"]
    assert bars and all('<progress value="1" max="1"' in bar["text/html"] for bar in bars), bars
    finals = [re.fullmatch(r"Epoch (\d+)/(\d+) - loss: [\d.]+ - accuracy: [\d.]+ - val_loss.*",
                           bar["text/plain"]) for bar in bars]
    assert all(finals), bars
    assert [int(m.group(1)) for m in finals] == list(range(1, int(finals[0].group(2)) + 1))

    # the history figure: shown inline and saved next to the notebook
    plot = _cell_with(nb, "getHistory()")
    assert any("image/png" in out.get("data", {}) for out in plot.outputs), plot.outputs
    assert (tmp_path / "training_history.png").stat().st_size > 10_000

    # the held-out metric beats always predicting the majority class
    metric_out = _text(_cell_with(nb, "held-out accuracy"))
    accuracy = float(re.search(r"^held-out accuracy: ([\d.]+)$", metric_out, re.M).group(1))
    majority = float(re.search(r"^majority-class accuracy: ([\d.]+)$", metric_out, re.M).group(1))
    assert accuracy > max(0.9, majority + 0.2), metric_out

    # the local store and the saved PipelineModel, reloaded with the same predictions
    saved = _text(_cell_with(nb, "PipelineModel.load"))
    assert "reloaded predictions identical: True" in saved, saved
    model_dirs = list(tmp.glob("sparkdl-notebook-*/models/breast_cancer/stages"))
    assert len(model_dirs) == 1, list(tmp.rglob("*"))[:20]
