"""horovod's keras_spark_mnist.py example, moved to sparkdl by docs/migration.md's steps
(examples/keras_spark_mnist.py), runs as a user runs it on 2 ranks and learns: its LIBSVM input
is generated here instead of downloaded (scikit-learn's 8x8 digits, upsampled to 28x28)."""
from __future__ import annotations

import bz2
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

pytestmark = pytest.mark.own_spark

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 240


def write_mnist_like(path: Path, copies: int = 2, seed: int = 0) -> int:
    """A LIBSVM file as mnist.bz2 is: '<label> <index>:<value> ...', 784 features in [0, 1]
    (1-based indices, zeros left out). Each 8x8 digit becomes 24x24 in a 28x28 frame, shifted by
    up to 2 pixels per copy; returns the number of rows."""
    digits = load_digits()
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(copies):
        for image, label in zip(digits.images, digits.target, strict=True):
            big = np.kron(image / 16.0, np.ones((3, 3)))
            dy, dx = rng.integers(0, 5, size=2)
            frame = np.zeros((28, 28))
            frame[dy:dy + 24, dx:dx + 24] = big
            flat = frame.reshape(-1)
            cells = " ".join(f"{i + 1}:{v:.4f}" for i in np.flatnonzero(flat) for v in [flat[i]])
            lines.append(f"{label} {cells}")
    path.write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    return len(lines)


def test_the_migrated_mnist_example_learns_on_two_ranks(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    assert write_mnist_like(data_dir / "mnist.bz2") == 2 * 1797
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET")}
    env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
               TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, str(REPO / "examples" / "keras_spark_mnist.py"), "--master", "local[2]",
           "--num-proc", "2", "--batch-size", "32", "--epochs", "3",
           "--work-dir", str(tmp_path / "store"), "--data-dir", str(data_dir)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert proc.returncode == 0, f"the example exited with {proc.returncode}:\n{tail}"
    assert re.findall(r"^Epoch (\d)/3 - loss: ", proc.stdout, re.M) == ["1", "2", "3"], proc.stdout
    accuracy = float(re.search(r"^Test accuracy: (\d\.\d+)", proc.stdout, re.M).group(1))
    print(f"test accuracy of the migrated example: {accuracy:.4f}")
    assert accuracy > 0.7, proc.stdout  # 10 balanced classes: chance is 0.1
    assert any((tmp_path / "store" / "runs").glob("*/logs")), "no TensorBoard logs in the store"
