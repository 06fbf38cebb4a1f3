"""Keras models and optimizers to bytes and back, in Keras' own `.keras` format.

Used on the driver (to ship the user's model) and on ranks and Python workers (to rebuild it).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import Any

import tensorflow as tf


def model_to_bytes(model: tf.keras.Model) -> bytes:
    """The model (architecture, weights, and optimizer state when compiled) as `.keras` bytes."""
    with tempfile.TemporaryDirectory(prefix="sparkdl-model-") as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        with open(path, "rb") as f:
            return f.read()


def model_from_bytes(data: bytes, custom_objects: Mapping[str, Any] | None = None,
                     compile: bool = True) -> tf.keras.Model:
    """Rebuild a model saved by `model_to_bytes`."""
    with tempfile.TemporaryDirectory(prefix="sparkdl-model-") as tmp:
        path = os.path.join(tmp, "model.keras")
        with open(path, "wb") as f:
            f.write(data)
        return tf.keras.models.load_model(path, custom_objects=dict(custom_objects or {}),
                                          compile=compile)


def optimizer_config(optimizer: Any) -> dict[str, Any]:
    """A rebuildable description of an optimizer instance or name ("adam")."""
    return tf.keras.optimizers.serialize(tf.keras.optimizers.get(optimizer))


def optimizer_from_config(config: Mapping[str, Any], lr_scale: float = 1.0,
                          custom_objects: Mapping[str, Any] | None = None
                          ) -> tf.keras.optimizers.Optimizer:
    """A fresh optimizer from `optimizer_config`, its constant learning rate times `lr_scale`."""
    config = {**config, "config": dict(config["config"])}
    lr = config["config"].get("learning_rate")
    if isinstance(lr, (int, float)):
        config["config"]["learning_rate"] = lr * lr_scale
    return tf.keras.optimizers.deserialize(config, custom_objects=dict(custom_objects or {}))
