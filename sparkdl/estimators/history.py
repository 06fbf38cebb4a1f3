"""`plot_history`: a fit's per-epoch metrics as one matplotlib Figure, train against validation."""
from __future__ import annotations

from typing import Any


def plot_history(model: Any, *, run: bool = False) -> Any:
    """A fit's metrics per epoch, one panel per metric (loss first), training against validation.

    Parameters
    ----------
    model : KerasModel or dict
        A fitted `KerasModel`, or a history dict such as its ``getHistory()``.
    run : bool, default False
        Plot the whole run (``getRunHistory()``), across resumes, rather than this fit's epochs.

    Returns
    -------
    matplotlib.figure.Figure
        The figure; a notebook shows it, ``fig.savefig(path)`` writes it.

    Raises
    ------
    ImportError
        When matplotlib is not installed.
    ValueError
        When the history holds no metric.

    Examples
    --------
    >>> fig = sparkdl.plot_history(pipeline_model.stages[-1])
    >>> fig.savefig("history.png")
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plot_history needs matplotlib; expected it installed: "
                          "pip install matplotlib") from exc
    if isinstance(model, dict):
        history = model
    else:
        history = model.getRunHistory() if run else model.getHistory()
    names = sorted((k for k in history if k != "epoch" and not k.startswith("val_")),
                   key=lambda k: k != "loss")
    if not names:
        raise ValueError(f"the history has no metrics to plot (keys {sorted(history)}); expected "
                         "a KerasModel from fit or its getHistory()")
    epochs = history.get("epoch") or list(range(1, len(history[names[0]]) + 1))
    figure = Figure(figsize=(4.5 * len(names), 3.5), layout="constrained")
    for axes, name in zip(figure.subplots(1, len(names), squeeze=False)[0], names, strict=True):
        axes.plot(epochs, history[name], marker="o", label="training")
        if f"val_{name}" in history:
            axes.plot(epochs, history[f"val_{name}"], marker="o", label="validation")
        axes.set(title=name, xlabel="epoch")
        axes.legend()
    return figure
