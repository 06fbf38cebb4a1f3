"""Which run a fit trains in, and whether it may resume it.

A run in the store keeps the fingerprint of the fit that started it: the model architecture, the
data and the params that change what an epoch computes. A fit resumes a run only when its own
fingerprint is the same (raising `epochs` continues a run); a different one is an error.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from sparkdl.store import Store

FINGERPRINT_FILE = "fingerprint.json"
# params that change what an epoch computes (epochs does not: more epochs continue the run)
EPOCH_PARAMS = ("loss", "loss_weights", "metrics", "batch_size", "val_batch_size",
                "train_steps_per_epoch", "validation", "shuffle", "random_seed", "jit_compile")


def fit_fingerprint(model: Any, optimizer: dict[str, Any], params: dict[str, Any], meta: Any,
                    input_files: list[Any]) -> dict[str, str]:
    """One digest per part of a fit that a resumed run must share."""
    import keras

    architecture = {"layers": _layers(model),
                    "weights": [(tuple(w.shape), str(w.dtype)) for w in model.weights],
                    "class": type(model).__name__}
    data = {"columns": {name: [spec.dtype, list(spec.shape)]
                        for name, spec in meta.columns.items()},
            "features": meta.feature_cols, "labels": meta.label_cols,
            "weight": meta.sample_weight_col, "rows": [meta.train_rows, meta.val_rows],
            "files": input_files}
    parts = {"model architecture": architecture, "data": data,
             "optimizer": _without_names(optimizer),
             **{name: keras.saving.serialize_keras_object(params.get(name))
                for name in EPOCH_PARAMS}}
    return {name: _digest(value) for name, value in parts.items()}


def _layers(model: Any) -> list[Any]:
    """Each layer's class and config without names (activations, rates, initialisers): models
    that differ only there have the same weights but are not the same fit."""
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # its config names its layers: take theirs instead
            config = _layers(layer)
        else:
            try:
                config = _without_names(layer.get_config())
            except (NotImplementedError, TypeError):  # a custom layer without get_config
                config = None
        found.append([type(layer).__name__, config])
    return found


def _without_names(config: Any) -> Any:
    """A config without its "name" entries (Keras numbers them per instance: adam, adam_1), and
    objects other than JSON values by their type (their str may hold an address)."""
    if isinstance(config, dict):
        return {k: _without_names(v) for k, v in config.items() if k != "name"}
    if isinstance(config, list | tuple):
        return [_without_names(v) for v in config]
    if config is None or isinstance(config, str | int | float):
        return config
    return type(config).__name__


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def derived_run_id(run_id: str, fingerprint: dict[str, str], epochs: int, copy: str) -> str:
    """The run of one fit of an estimator copy (a CrossValidator fold and param map); `copy` is
    its `copy_identity`."""
    return f"{run_id}-{_digest([fingerprint, epochs, copy])[:10]}"


def copy_identity(model: Any, data_key: str, num_proc: int, callbacks: bytes) -> str:
    """What sets one copy's fit apart beyond its fingerprint: the data it materialised (a
    CrossValidator's folds share columns, row counts and input files), its initial weights,
    num_proc and its callbacks (pickled)."""
    weights = hashlib.sha256()
    for array in model.get_weights():
        weights.update(np.ascontiguousarray(array).tobytes())
    return _digest({"data": data_key, "weights": weights.hexdigest(), "num_proc": num_proc,
                    "callbacks": hashlib.sha256(callbacks).hexdigest()})


def claim_run(store: Store, run_id: str, fingerprint: dict[str, str]) -> None:
    """Record `fingerprint` for `run_id`, or raise when the run's checkpoints belong to a fit
    with a different one."""
    path = f"{store.run_dir(run_id)}/{FINGERPRINT_FILE}"
    checkpoints = store.exists(store.checkpoint_dir(run_id)) and any(
        name.endswith(".ckpt") for name in store.listdir(store.checkpoint_dir(run_id)))
    if checkpoints and store.exists(path):
        recorded = json.loads(store.read_bytes(path))
        changed = sorted(k for k in set(recorded) | set(fingerprint)
                         if recorded.get(k) != fingerprint.get(k))
        if changed:
            raise ValueError(
                f"run_id {run_id!r} holds checkpoints of a different fit: its "
                f"{', '.join(changed)} changed. A run resumes only with the same model, data "
                "and training params (epochs may grow); set a new run_id (or none) to start a "
                "new run.")
        return
    store.write_bytes(path, json.dumps(fingerprint, indent=1, sort_keys=True).encode())
