"""Keras models and optimizers to bytes and back, in Keras 3's own `.keras` format.

Used on the driver (to ship the user's model) and on ranks and Python workers (to rebuild it).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import keras

LEGACY_KERAS_HELP = (
    "sparkdl trains Keras 3 models (`import keras`, or `tf.keras` on TensorFlow >= 2.16); "
    "Keras 2 (tf_keras, TF_USE_LEGACY_KERAS=1) is not supported. Unset TF_USE_LEGACY_KERAS and "
    "build the model with `import keras`.")


def require_keras3() -> None:
    """Fail when this process would run legacy Keras 2 (tf_keras) instead of Keras 3."""
    legacy = os.environ.get("TF_USE_LEGACY_KERAS", "").lower() in ("1", "true", "yes")
    if legacy or int(keras.__version__.split(".")[0]) < 3:
        raise RuntimeError(f"Keras {keras.__version__} with TF_USE_LEGACY_KERAS="
                           f"{os.environ.get('TF_USE_LEGACY_KERAS')!r}: {LEGACY_KERAS_HELP}")


def with_registered(custom_objects: Mapping[str, Any] | None) -> dict[str, Any]:
    """`custom_objects` plus everything registered with `keras.saving.register_keras_serializable`
    in this process: ranks and Python workers never ran the registering code."""
    return {**keras.saving.get_custom_objects(), **dict(custom_objects or {})}


def register_custom_objects(custom_objects: Mapping[str, Any]) -> None:
    """Register the 'package>name' entries with Keras in this process, as the user's process had
    them, so a model saved here keeps the names it is loaded by elsewhere."""
    for key, obj in custom_objects.items():
        if ">" in key:
            package, name = key.split(">", 1)
            keras.saving.register_keras_serializable(package, name)(obj)


def model_to_bytes(model: keras.Model) -> bytes:
    """The model (architecture, weights, and optimizer state when compiled) as `.keras` bytes."""
    with tempfile.TemporaryDirectory(prefix="sparkdl-model-") as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        with open(path, "rb") as f:
            return f.read()


def model_from_bytes(data: bytes, custom_objects: Mapping[str, Any] | None = None,
                     compile: bool = True) -> keras.Model:
    """Rebuild a model saved by `model_to_bytes`."""
    register_custom_objects(custom_objects or {})
    with tempfile.TemporaryDirectory(prefix="sparkdl-model-") as tmp:
        path = os.path.join(tmp, "model.keras")
        with open(path, "wb") as f:
            f.write(data)
        return keras.saving.load_model(path, custom_objects=dict(custom_objects or {}),
                                       compile=compile, safe_mode=False)


@dataclass(frozen=True)
class KerasConfig:
    """A Keras optimizer, loss or metric kept as its Keras config, rebuilt where it is loaded."""

    config: dict[str, Any]


_CONFIGURABLE = (keras.optimizers.Optimizer, keras.losses.Loss, keras.metrics.Metric)


def to_keras_configs(value: Any) -> Any:
    """`value` with every Keras optimizer, loss and metric (also inside lists and dicts) replaced
    by its KerasConfig: configs outlive the live objects' internals across Keras versions."""
    if isinstance(value, _CONFIGURABLE):
        return KerasConfig(keras.saving.serialize_keras_object(value))
    if isinstance(value, (list, tuple)):
        return type(value)(to_keras_configs(v) for v in value)
    if isinstance(value, dict):
        return {k: to_keras_configs(v) for k, v in value.items()}
    return value


def from_keras_configs(value: Any, custom_objects: Mapping[str, Any]) -> Any:
    """Inverse of `to_keras_configs`."""
    if isinstance(value, KerasConfig):
        return keras.saving.deserialize_keras_object(value.config,
                                                     custom_objects=dict(custom_objects))
    if isinstance(value, (list, tuple)):
        return type(value)(from_keras_configs(v, custom_objects) for v in value)
    if isinstance(value, dict):
        return {k: from_keras_configs(v, custom_objects) for k, v in value.items()}
    return value


def optimizer_config(optimizer: Any) -> dict[str, Any]:
    """A rebuildable description of an optimizer instance or name ("adam")."""
    return keras.optimizers.serialize(keras.optimizers.get(optimizer))


@keras.saving.register_keras_serializable(package="sparkdl")
class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The user's learning-rate schedule times a constant (the number of ranks while training)."""

    def __init__(self, schedule: Any, factor: float) -> None:
        self.schedule, self.factor = schedule, float(factor)

    def __call__(self, step: Any) -> Any:
        return self.schedule(step) * self.factor

    def get_config(self) -> dict[str, Any]:
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule),
                "factor": self.factor}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ScaledSchedule:
        return cls(keras.optimizers.schedules.deserialize(config["schedule"]), config["factor"])


def optimizer_from_config(config: Mapping[str, Any], lr_scale: float = 1.0,
                          custom_objects: Mapping[str, Any] | None = None
                          ) -> keras.optimizers.Optimizer:
    """A fresh optimizer from `optimizer_config`, its learning rate (constant or schedule) times
    `lr_scale`; a LossScaleOptimizer's inner optimizer is scaled."""
    objects = dict(custom_objects or {})
    return keras.optimizers.deserialize(_scaled(config, lr_scale, objects), custom_objects=objects)


def _scaled(config: Mapping[str, Any], factor: float, objects: dict[str, Any]) -> dict[str, Any]:
    inner = dict(config["config"])
    if factor == 1.0:
        return {**config, "config": inner}
    if "inner_optimizer" in inner:
        inner["inner_optimizer"] = _scaled(inner["inner_optimizer"], factor, objects)
        return {**config, "config": inner}
    lr = inner.get("learning_rate")
    if isinstance(lr, (int, float)):
        inner["learning_rate"] = lr * factor
    elif isinstance(lr, Mapping):
        schedule = keras.optimizers.schedules.deserialize(dict(lr), custom_objects=objects)
        inner["learning_rate"] = keras.saving.serialize_keras_object(
            ScaledSchedule(schedule, factor))
    return {**config, "config": inner}
