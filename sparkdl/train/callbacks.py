"""Keras callbacks rank 0 adds to training: per-epoch checkpoints, progress to the driver and
TensorBoard logs in the store; every rank beats its heartbeat."""
from __future__ import annotations

import tempfile
import time
from typing import Any

import keras

from sparkdl.launch import heartbeat, report
from sparkdl.store import Store
from sparkdl.train.checkpoint import capture, save_checkpoint


def _floats(logs: dict[str, Any] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items()}


class CheckpointCallback(keras.callbacks.Callback):
    """After every epoch, write weights, optimizer state and the run's history to the store."""

    def __init__(self, store: Store, run_id: str, history: dict[str, list[float]],
                 lr_scale: float = 1.0) -> None:
        super().__init__()
        self.store, self.run_id, self.lr_scale = store, run_id, lr_scale
        self.history = {k: list(v) for k, v in history.items()}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.history.setdefault("epoch", []).append(epoch + 1)
        for key, value in _floats(logs).items():
            self.history.setdefault(key, []).append(value)
        save_checkpoint(self.store, self.run_id,
                        capture(self.model, epoch + 1, self.history, self.lr_scale))


class ProgressCallback(keras.callbacks.Callback):
    """Send progress to the driver through `sparkdl.launch.report`: each epoch's metrics (of all
    ranks) at its end, and within an epoch rank 0's running metrics every `every_batches`
    batches or every `every_seconds`, whichever is rarer."""

    def __init__(self, epochs: int, every_batches: int = 10, every_seconds: float = 1.0) -> None:
        super().__init__()
        self.epochs = epochs
        self.every_batches, self.every_seconds = every_batches, every_seconds
        self._t0 = self._last_time = time.monotonic()
        self._epoch = self._last_step = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._t0 = self._last_time = time.monotonic()
        self._epoch, self._last_step = epoch, 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        now, step, steps = time.monotonic(), batch + 1, self.params.get("steps")
        if (not steps or step >= steps or step - self._last_step < self.every_batches
                or now - self._last_time < self.every_seconds):
            return
        self._last_time, self._last_step = now, step
        report({"event": "batch", "epoch": self._epoch + 1, "epochs": self.epochs,
                "step": step, "steps": steps, "logs": _floats(logs)})

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        report({"event": "epoch", "epoch": epoch + 1, "epochs": self.epochs,
                "logs": _floats(logs), "seconds": time.monotonic() - self._t0})


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback (per-epoch logs) without its per-batch work.

    At ``update_freq="epoch"`` Keras still calls ``summary.scalar`` for every metric of every
    batch, with no writer to record them: 9 % of the steps of the P4 MLP (86,462 against 94,649
    samples/s in one process). Its other batch-end work, the train graph, writes nothing on
    TF 2.21 (the traced function lacks the attributes it looks for)."""

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        pass


class RunTensorBoard(EpochTensorBoard):
    """Per-epoch TensorBoard logs of a run, kept in the store across resumes and retries.

    Logs go to a local folder that starts as a copy of the run's logs in the store; after every
    epoch (once its checkpoint is written) the folder replaces them. The folder is in the rank's
    temporary directory, which goes with the rank.
    """

    def __init__(self, store: Store, run_id: str) -> None:
        self.store, self.target = store, store.logs_dir(run_id)
        self.local_dir = tempfile.mkdtemp(prefix="sparkdl-tb-")
        if store.exists(self.target):
            store.get_dir(self.target, self.local_dir)
        super().__init__(log_dir=self.local_dir)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        for writer in self._writers.values():
            writer.flush()
        self.store.put_dir(self.local_dir, self.target)


class HeartbeatCallback(keras.callbacks.Callback):
    """Beat after training and validation batches (at most once a second) and at every epoch's
    begin and end, recording (epoch, phase), so the task watching this rank knows it
    progresses (see `stall_timeout`).

    Placed after the other callbacks: a rank blocked in one of them does not record that event,
    while its peers (then blocked in the next collective) have: it is the one named."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        heartbeat()

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        heartbeat()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        heartbeat(progress=(epoch, 0))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        heartbeat(progress=(epoch, 1))
