"""Keras callbacks rank 0 adds to training: per-epoch checkpoints and progress to the driver."""
from __future__ import annotations

import time
from typing import Any

import keras

from sparkdl.launch import report
from sparkdl.store import Store
from sparkdl.train.checkpoint import capture, save_checkpoint


def _floats(logs: dict[str, Any] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items()}


class CheckpointCallback(keras.callbacks.Callback):
    """After every epoch, write weights, optimizer state and the run's history to the store."""

    def __init__(self, store: Store, run_id: str, history: dict[str, list[float]]) -> None:
        super().__init__()
        self.store, self.run_id = store, run_id
        self.history = {k: list(v) for k, v in history.items()}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.history.setdefault("epoch", []).append(epoch + 1)
        for key, value in _floats(logs).items():
            self.history.setdefault(key, []).append(value)
        save_checkpoint(self.store, self.run_id, capture(self.model, epoch + 1, self.history))


class ProgressCallback(keras.callbacks.Callback):
    """Send each epoch's metrics (of all ranks) to the driver through `sparkdl.launch.report`."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs
        self._t0 = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._t0 = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        report({"event": "epoch", "epoch": epoch + 1, "epochs": self.epochs,
                "logs": _floats(logs), "seconds": time.monotonic() - self._t0})
