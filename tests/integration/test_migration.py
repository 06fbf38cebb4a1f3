"""horovod's keras_spark_mnist.py example, moved to sparkdl by docs/migration.md's steps
(examples/keras_spark_mnist.py), runs as `python examples/keras_spark_mnist.py` runs it (in the
test session's Spark: keras_helpers.run_script) on 2 ranks and learns: its LIBSVM input is
generated here instead of downloaded (scikit-learn's 8x8 digits, upsampled to 28x28)."""
from __future__ import annotations

import bz2
import importlib.util
import re
from pathlib import Path

import numpy as np
from keras_helpers import run_script
from sklearn.datasets import load_digits

REPO = Path(__file__).resolve().parents[2]


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


def test_the_migrated_mnist_example_learns_on_two_ranks(spark, tmp_path, monkeypatch, capsys):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    assert write_mnist_like(data_dir / "mnist.bz2") == 2 * 1797
    out = run_script(REPO / "examples" / "keras_spark_mnist.py",
                     ["--master", "local[2]", "--num-proc", "2", "--batch-size", "32",
                      "--epochs", "3", "--work-dir", tmp_path / "store", "--data-dir", data_dir],
                     spark, monkeypatch, capsys)
    assert re.findall(r"^Epoch (\d)/3 - loss: ", out, re.M) == ["1", "2", "3"], out
    accuracy = float(re.search(r"^Test accuracy: (\d\.\d+)", out, re.M).group(1))
    print(f"test accuracy of the migrated example: {accuracy:.4f}")
    assert accuracy > 0.7, out  # 10 balanced classes: chance is 0.1
    if importlib.util.find_spec("tensorflow"):  # Keras writes TensorBoard logs with tf.summary
        assert any((tmp_path / "store" / "runs").glob("*/logs")), "no TensorBoard logs in the store"
