"""Driver-side progress views and the history plot (no Spark: fed the payloads rank 0 sends)."""
from __future__ import annotations

import io

import pytest

from sparkdl.estimators.history import plot_history
from sparkdl.estimators.progress import EpochReporter, format_batch


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _batch(step, loss):
    return {"event": "batch", "epoch": 1, "epochs": 2, "step": step, "steps": 40,
            "logs": {"loss": loss}}


EPOCH = {"event": "epoch", "epoch": 1, "epochs": 2, "logs": {"val_loss": 0.5, "loss": 0.25},
         "seconds": 1.25}


def test_terminal_gets_one_line_updated_in_place_then_the_epoch_line():
    out = _Terminal()
    reporter = EpochReporter(1, stream=out)
    for payload in (_batch(10, 0.9), _batch(20, 0.7), EPOCH):
        reporter(0, payload)
    updates = out.getvalue().split("\r")[1:]
    assert updates[0].startswith("Epoch 1/2 [======>.") and "10/40 - loss: 0.9000" in updates[0]
    assert "20/40 - loss: 0.7000" in updates[1]
    assert updates[2].rstrip(" \n") == "Epoch 1/2 - loss: 0.2500 - val_loss: 0.5000 - 1.2s"
    assert out.getvalue().endswith("\n") and out.getvalue().count("\n") == 1


def test_a_pipe_gets_epoch_lines_only_and_verbose_0_nothing():
    out = io.StringIO()
    for payload in (_batch(10, 0.9), EPOCH):
        EpochReporter(1, stream=out)(0, payload)
    assert out.getvalue() == "Epoch 1/2 - loss: 0.2500 - val_loss: 0.5000 - 1.2s\n"
    quiet = io.StringIO()
    reporter = EpochReporter(0, stream=quiet)
    reporter(0, EPOCH)
    assert quiet.getvalue() == "" and reporter.epochs == [EPOCH]


def test_batch_bar_is_full_at_the_last_step():
    assert "[" + "=" * 29 + ">]" in format_batch({**_batch(40, 0.1)})


def test_plot_history_draws_a_panel_per_metric_with_validation():
    history = {"epoch": [1, 2, 3], "loss": [3.0, 2.0, 1.0], "val_loss": [3.5, 2.5, 2.0],
               "mae": [1.0, 0.8, 0.6]}
    figure = plot_history(history)
    loss, mae = figure.axes
    assert (loss.get_title(), mae.get_title()) == ("loss", "mae")
    assert [line.get_label() for line in loss.get_lines()] == ["training", "validation"]
    assert list(loss.get_lines()[1].get_ydata()) == [3.5, 2.5, 2.0]
    assert [line.get_label() for line in mae.get_lines()] == ["training"]


def test_plot_history_of_nothing_says_what_it_expected():
    with pytest.raises(ValueError, match="the history has no metrics to plot"):
        plot_history({"epoch": []})
