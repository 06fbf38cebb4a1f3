"""Progress on the driver, from what rank 0 reports while training runs: in a Jupyter notebook a
bar per epoch that advances within the epoch, in a terminal one updating line, elsewhere (logs,
pipes) one line per epoch."""
from __future__ import annotations

import html
import logging
import sys
from typing import Any, Protocol, TextIO

log = logging.getLogger("sparkdl.progress")
BAR_WIDTH = 30


def format_epoch(payload: dict[str, Any]) -> str:
    """'Epoch 3/10 - loss: 0.1234 - acc: 0.9 - val_loss: 0.2345 - val_acc: 0.8 - 1.2s': the loss
    first, then the other metrics, then their validation values, whatever order Keras used."""
    parts = [f"Epoch {payload['epoch']}/{payload['epochs']}", _metrics(payload),
             f"{payload.get('seconds', 0.0):.1f}s"]
    return " - ".join(p for p in parts if p)


def format_batch(payload: dict[str, Any]) -> str:
    """'Epoch 3/10 [=======>......] 45/100 - loss: 0.1234': rank 0's running metrics."""
    step, steps = payload["step"], payload["steps"]
    done = BAR_WIDTH * step // steps
    bar = "=" * max(done - 1, 0) + (">" if done else "") + "." * (BAR_WIDTH - done)
    parts = [f"Epoch {payload['epoch']}/{payload['epochs']} [{bar}] {step}/{steps}",
             _metrics(payload)]
    return " - ".join(p for p in parts if p)


def _metrics(payload: dict[str, Any]) -> str:
    logs = payload.get("logs", {})
    order = sorted(logs, key=lambda k: (k.startswith("val_"), k.removeprefix("val_") != "loss"))
    return " - ".join(f"{k}: {logs[k]:.4f}" for k in order)


class _View(Protocol):
    def batch(self, payload: dict[str, Any]) -> None: ...

    def epoch(self, payload: dict[str, Any], line: str) -> None: ...


class EpochReporter:
    """`on_message` handler for `sparkdl.run`: progress in the view that fits where the driver
    runs, when verbose; every epoch's line also goes to the `sparkdl.progress` logger."""

    def __init__(self, verbose: int, stream: TextIO | None = None) -> None:
        self.verbose = verbose
        self.epochs: list[dict[str, Any]] = []
        self._view: _View | None = None
        if verbose >= 1:
            self._view = _NotebookBars() if _in_notebook() else _StreamLines(stream)

    def __call__(self, rank: int, payload: Any) -> None:
        if not isinstance(payload, dict):
            return
        event = payload.get("event")
        if event == "epoch":
            self.epochs.append(payload)
            line = format_epoch(payload)
            log.info(line)
            if self._view is not None:
                self._view.epoch(payload, line)
        elif event == "batch" and self._view is not None:
            self._view.batch(payload)

    def say(self, line: str) -> None:
        """A line of its own (a retry, say): logged, and shown when verbose."""
        log.warning(line)
        if self.verbose >= 1:
            stream = sys.stdout
            stream.write(line + "\n")
            stream.flush()


def _in_notebook() -> bool:
    """Inside a Jupyter kernel (a shell with a kernel), judged without importing IPython."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


class _StreamLines:
    """A terminal gets one line that updates in place; a pipe or log file one line per epoch."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self._width = 0  # of the line being updated in place

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stdout  # looked up late: notebooks and tests swap stdout

    def batch(self, payload: dict[str, Any]) -> None:
        if not self.stream.isatty():
            return
        text = format_batch(payload)
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def epoch(self, payload: dict[str, Any], line: str) -> None:
        prefix = "\r" if self._width else ""
        self.stream.write(prefix + line.ljust(self._width) + "\n")
        self.stream.flush()
        self._width = 0


class _Bar:
    """One epoch's bar: HTML for the notebook, the same text as plain text."""

    def __init__(self, value: int, maximum: int, text: str) -> None:
        self.value, self.maximum, self.text = value, maximum, text

    def _repr_html_(self) -> str:
        return (f'<div style="font-family: monospace"><progress value="{self.value}" '
                f'max="{self.maximum}" style="width: 20em"></progress> '
                f"{html.escape(self.text)}</div>")

    def __repr__(self) -> str:
        return self.text


class _NotebookBars:
    """A bar per epoch in the cell's output, updated in place (a display id per epoch)."""

    def __init__(self) -> None:
        self._handles: dict[int, Any] = {}

    def _show(self, epoch: int, bar: _Bar) -> None:
        from IPython.display import display

        if epoch in self._handles:
            self._handles[epoch].update(bar)
        else:
            self._handles[epoch] = display(bar, display_id=True)

    def batch(self, payload: dict[str, Any]) -> None:
        self._show(payload["epoch"], _Bar(payload["step"], payload["steps"],
                                          format_batch(payload)))

    def epoch(self, payload: dict[str, Any], line: str) -> None:
        self._show(payload["epoch"], _Bar(1, 1, line))
