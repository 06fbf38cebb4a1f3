"""Keras 3 on Horovod's core ops: gradient averaging, rank-0 broadcast, metric sums.

`horovod.tensorflow.keras` is built for Keras 2; these pieces do its job for Keras 3 with the
collectives of `horovod.tensorflow` or `horovod.torch`, whichever matches the Keras backend, and
`keras.ops` for the rest. They run on a rank, after `hvd.init()`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from sparkdl.train.backend import horovod

_classes: dict[type, type] = {}


def distributed_optimizer(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """A new optimizer of the same class and config that averages the gradients over all ranks
    (one grouped allreduce per update), so every rank applies the same update.

    For a `LossScaleOptimizer` the average is taken before its finite check, so all ranks agree
    on skipping a step. With Keras' `gradient_accumulation_steps` each rank sums its own steps'
    gradients and the ranks average only on the update step: one allreduce per update."""
    cls = type(optimizer)
    if cls not in _classes:
        _classes[cls] = _distributed_class(cls)
    return _classes[cls].from_config(optimizer.get_config())


def _distributed_class(cls: type) -> type:
    class Distributed(cls):  # type: ignore[valid-type, misc]
        def apply(self, grads: Sequence[Any], trainable_variables: Any = None) -> Any:
            if trainable_variables is not None:
                trainable_variables = list(trainable_variables)
            if not self._averages_per_update(trainable_variables):
                grads = average_gradients(grads)
            return super().apply(grads, trainable_variables)

        def _clip_gradients(self, grads: Sequence[Any]) -> Any:
            # Keras calls this once per update, with the accumulated gradients when it accumulates
            if self._averages_per_update():
                grads = average_gradients(grads)
            return super()._clip_gradients(grads)

        def _averages_per_update(self, variables: list[Any] | None = None) -> bool:
            """Average once per update: with gradient accumulation and no variable that takes its
            gradient as its value (float8 scales), judged on the variables the optimizer holds."""
            if not getattr(self, "gradient_accumulation_steps", None):
                return False
            if self.built or variables is None:
                variables = self._trainable_variables
            return not any(getattr(v, "overwrite_with_gradient", False) for v in variables)

    Distributed.__name__ = Distributed.__qualname__ = f"Distributed{cls.__name__}"
    return Distributed


def average_gradients(grads: Sequence[Any]) -> list[Any]:
    """Gradients averaged across ranks; None stays None (variables without a gradient), sparse
    gradients are densified (a grouped allreduce needs dense tensors)."""
    present = [i for i, g in enumerate(grads) if g is not None]
    if not present:
        return list(grads)
    hvd = horovod()
    dense = [_dense(grads[i]) for i in present]
    averaged = hvd.grouped_allreduce(dense, op=hvd.Average, name="sparkdl.gradients")
    out = list(grads)
    for i, g in zip(present, averaged, strict=True):
        out[i] = g
    return out


def broadcast_from_rank0(variables: Sequence[Any], prefix: str) -> None:
    """Assign rank 0's values to `variables` on every rank (same order on every rank)."""
    hvd = horovod()
    for i, var in enumerate(variables):
        var.assign(hvd.broadcast(_dense(var.value), root_rank=0, name=f"sparkdl.{prefix}.{i}"))


def _dense(value: Any) -> Any:
    """A dense tensor of the backend's own (TensorFlow densifies IndexedSlices), outside torch's
    autograd (Horovod's torch ops take plain tensors)."""
    if keras.backend.backend() == "torch":
        return value.detach()
    import tensorflow as tf

    return tf.convert_to_tensor(value)


def compile_forward_with_xla(model: keras.Model) -> None:
    """XLA-compile the model's forward pass, and with it the gradient TensorFlow derives from it.

    Keras' own `jit_compile=True` compiles the whole train step, optimizer included, and
    Horovod's collectives have no XLA kernels; here the collectives stay outside XLA."""
    import tensorflow as tf

    model.call = tf.function(model.call, jit_compile=True, reduce_retracing=True)


class MetricSumCallback(keras.callbacks.Callback):
    """Combine the ranks' metrics exactly: after the last training step and the last validation
    step of an epoch, every metric's state (its totals and counts) is summed over the ranks, so
    the results Keras then reads cover all rows, and every rank logs the same values.

    Sums, not averages of per-rank results: shards may differ by a row and batches by size.
    Every built-in Keras metric keeps additive state (totals, counts, confusion matrices)."""

    def __init__(self, train_steps: int, val_steps: int | None) -> None:
        super().__init__()
        self.train_steps, self.val_steps = train_steps, val_steps

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if batch >= self.train_steps - 1:
            sum_over_ranks(self.model.metrics_variables, "sparkdl.metrics.train")

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.val_steps is not None and batch >= self.val_steps - 1:
            sum_over_ranks(self.model.metrics_variables, "sparkdl.metrics.val")


def sum_over_ranks(variables: Sequence[Any], name: str) -> None:
    """Replace each variable by its sum over all ranks, in one allreduce (same order on every
    rank); float64 keeps integer counts exact."""
    if not variables:
        return
    ops, hvd = keras.ops, horovod()
    flat = ops.concatenate([ops.reshape(ops.cast(v.value, "float64"), [-1]) for v in variables])
    total = hvd.allreduce(_dense(flat), op=hvd.Sum, name=name)
    offset = 0
    for var in variables:
        count = int(np.prod(var.shape))
        var.assign(ops.cast(ops.reshape(total[offset:offset + count], var.shape), var.dtype))
        offset += count
