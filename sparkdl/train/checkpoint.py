"""Per-epoch checkpoints of a run in its Store: weights, optimizer state and history so far.

Each checkpoint is one file written atomically (temp name, then rename), so a crash mid-write
never leaves a file that resume would load.
"""
from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from typing import Any

import keras

from sparkdl.store import Store

_NAME = re.compile(r"^epoch-(\d{5})\.ckpt$")
KEEP = 2  # checkpoints kept per run; older ones are deleted after a newer one is written


@dataclass
class Checkpoint:
    """State after `epoch` completed epochs (1-based count)."""

    epoch: int
    weights: list[Any]
    optimizer: list[Any]
    history: dict[str, list[float]] = field(default_factory=dict)
    # the user's learning rate (training's divided by its scale) when it is a variable that
    # callbacks change (ReduceLROnPlateau); None for a schedule
    learning_rate: float | None = None


def save_checkpoint(store: Store, run_id: str, ckpt: Checkpoint) -> str:
    directory = store.checkpoint_dir(run_id)
    path = f"{directory}/epoch-{ckpt.epoch:05d}.ckpt"
    store.write_bytes(path, pickle.dumps(ckpt, protocol=pickle.HIGHEST_PROTOCOL))
    for old in _epochs(store, run_id)[:-KEEP]:
        store.delete(f"{directory}/epoch-{old:05d}.ckpt")
    return path


def load_latest_checkpoint(store: Store, run_id: str) -> Checkpoint | None:
    """The checkpoint of the last completed epoch of `run_id`, or None for a new run."""
    epochs = _epochs(store, run_id)
    if not epochs:
        return None
    data = store.read_bytes(f"{store.checkpoint_dir(run_id)}/epoch-{epochs[-1]:05d}.ckpt")
    return pickle.loads(data)


def _epochs(store: Store, run_id: str) -> list[int]:
    names = store.listdir(store.checkpoint_dir(run_id))
    return sorted(int(m.group(1)) for m in map(_NAME.match, names) if m)


def capture(model: keras.Model, epoch: int, history: dict[str, list[float]],
            lr_scale: float = 1.0) -> Checkpoint:
    """The model's state after `epoch`; training's learning rate is `lr_scale` times the user's."""
    rate = _learning_rate(model.optimizer)
    return Checkpoint(epoch=epoch, weights=model.get_weights(),
                      optimizer=optimizer_state(model.optimizer),
                      history={k: list(v) for k, v in history.items()},
                      learning_rate=None if rate is None else float(rate.numpy()) / lr_scale)


def restore(model: keras.Model, ckpt: Checkpoint, lr_scale: float = 1.0) -> None:
    """Load weights, optimizer state and the learning rate (times `lr_scale`) into a compiled
    model."""
    model.set_weights(ckpt.weights)
    copy_optimizer_state(model.optimizer, ckpt.optimizer, model.trainable_variables)
    rate = _learning_rate(model.optimizer)
    if rate is not None and ckpt.learning_rate is not None:
        rate.assign(ckpt.learning_rate * lr_scale)


def _learning_rate(optimizer: Any) -> Any | None:
    """The optimizer's learning-rate variable; None when a schedule gives the rate."""
    return next((v for v in optimizer.variables if v.name == "learning_rate"), None)


def _state_variables(optimizer: Any) -> list[Any]:
    # The learning rate is kept apart: training scales it by the number of ranks, and the
    # returned model must carry the user's own.
    return [v for v in optimizer.variables if v.name != "learning_rate"]


def optimizer_state(optimizer: Any) -> list[Any]:
    """The optimizer's state (step count, slots, loss scale) as numpy arrays, in a fixed order."""
    return [v.numpy() for v in _state_variables(optimizer)]


def copy_optimizer_state(optimizer: Any, values: list[Any], trainable: list[Any]) -> None:
    """Build `optimizer` for `trainable` unless built, and assign `optimizer_state` values in
    order (a LossScaleOptimizer built twice adds its variables again)."""
    if not optimizer.built:
        optimizer.build(trainable)
    variables = _state_variables(optimizer)
    if len(variables) != len(values):
        raise ValueError(f"checkpoint has {len(values)} optimizer variables; the optimizer has "
                         f"{len(variables)}: was the model or optimizer changed?")
    for var, value in zip(variables, values, strict=True):
        var.assign(value)
