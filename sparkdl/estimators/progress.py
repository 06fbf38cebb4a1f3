"""Per-epoch progress on the driver, from the metrics rank 0 reports while training runs."""
from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

log = logging.getLogger("sparkdl.progress")


def format_epoch(payload: dict[str, Any]) -> str:
    """'Epoch 3/10 - loss: 0.1234 - acc: 0.9 - val_loss: 0.2345 - val_acc: 0.8 - 1.2s': the loss
    first, then the other metrics, then their validation values, whatever order Keras used."""
    logs = payload.get("logs", {})
    order = sorted(logs, key=lambda k: (k.startswith("val_"), k.removeprefix("val_") != "loss"))
    metrics = " - ".join(f"{k}: {logs[k]:.4f}" for k in order)
    parts = [f"Epoch {payload['epoch']}/{payload['epochs']}", metrics,
             f"{payload.get('seconds', 0.0):.1f}s"]
    return " - ".join(p for p in parts if p)


class EpochReporter:
    """`on_message` handler for `sparkdl.run`: one line per epoch to `stream` when verbose."""

    def __init__(self, verbose: int, stream: TextIO | None = None) -> None:
        self.verbose = verbose
        self.stream = stream
        self.epochs: list[dict[str, Any]] = []

    def __call__(self, rank: int, payload: Any) -> None:
        if not isinstance(payload, dict) or payload.get("event") != "epoch":
            return
        self.epochs.append(payload)
        line = format_epoch(payload)
        log.info(line)
        if self.verbose >= 1:
            stream = self.stream or sys.stdout
            stream.write(line + "\n")
            stream.flush()
