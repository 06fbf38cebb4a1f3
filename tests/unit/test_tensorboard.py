"""EpochTensorBoard writes what Keras' TensorBoard callback writes per epoch, without its
per-batch summary calls."""
from __future__ import annotations

import glob
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sparkdl.train.callbacks import EpochTensorBoard


class _CountingSummary:
    """tf.summary, recording the name of every scalar() call."""

    def __init__(self) -> None:
        self.scalars: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(tf.summary, name)

    def scalar(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.scalars.append(name)
        return tf.summary.scalar(name, *args, **kwargs)


def test_epoch_logs_without_a_summary_call_per_batch(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).random((64, 4), dtype=np.float32)
    callback = EpochTensorBoard(log_dir=str(tmp_path))
    callback._summary_module = summary = _CountingSummary()
    model.fit(x, x[:, 0], batch_size=8, epochs=3, validation_data=(x, x[:, 0]), verbose=0,
              callbacks=[callback])
    assert not [name for name in summary.scalars if name.startswith("batch_")]  # Keras: 24
    assert summary.scalars.count("epoch_loss") == 6  # train and validation, 3 epochs each
    train = EventAccumulator(glob.glob(str(tmp_path / "train" / "*tfevents*"))[0]).Reload()
    assert "epoch_loss" in train.Tags()["tensors"]
