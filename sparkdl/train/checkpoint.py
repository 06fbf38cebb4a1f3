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


def capture(model: keras.Model, epoch: int, history: dict[str, list[float]]) -> Checkpoint:
    return Checkpoint(epoch=epoch, weights=model.get_weights(),
                      optimizer=optimizer_state(model.optimizer),
                      history={k: list(v) for k, v in history.items()})


def restore(model: keras.Model, ckpt: Checkpoint) -> None:
    """Load weights and optimizer state into a compiled model."""
    model.set_weights(ckpt.weights)
    copy_optimizer_state(model.optimizer, ckpt.optimizer, model.trainable_variables)


def _state_variables(optimizer: Any) -> list[Any]:
    # The learning rate is config, not state: training scales it by the number of ranks, and the
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
