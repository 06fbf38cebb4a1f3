"""The training loop each Horovod rank runs: rebuild the model, read the shard, fit, checkpoint.

Runs in the rank's child process (no SparkSession). Rank 0 returns the trained model and history.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sparkdl.data.meta import DatasetMeta
from sparkdl.store import Store

log = logging.getLogger(__name__)


@dataclass
class KerasTrainSpec:
    """Everything a rank needs, prepared and checked on the driver."""

    model: bytes  # `.keras` bytes of the user's (possibly uncompiled) model
    optimizer: dict[str, Any]  # optimizer_config of the user's optimizer, learning rate unscaled
    compile_args: dict[str, Any]  # loss, loss_weights, metrics
    custom_objects: dict[str, Any]
    callbacks: list[Any]
    meta: DatasetMeta
    store: Store
    run_id: str
    epochs: int
    batch_size: int
    val_batch_size: int
    train_steps: int | None
    val_steps: int | None
    shuffle: bool
    seed: int  # from the driver: shuffling and initialisation reproducible from one number
    verbose: int
    jit_compile: bool


def train_keras(spec: KerasTrainSpec) -> dict[str, Any] | None:
    import keras

    from sparkdl.launch import heartbeat
    from sparkdl.train.backend import horovod

    hvd = horovod()  # the fit's backend: the rank's environment sets KERAS_BACKEND
    hvd.init()
    heartbeat(force=True)  # the framework imported and peers met: the rank is progressing
    rank, size = hvd.rank(), hvd.size()
    _share_cores(max(1, len(os.sched_getaffinity(0)) // hvd.local_size()))
    keras.utils.set_random_seed(spec.seed + rank)

    from sparkdl.data.sharding import steps_per_epoch
    from sparkdl.train.callbacks import (
        CheckpointCallback,
        HeartbeatCallback,
        ProgressCallback,
        RunTensorBoard,
    )
    from sparkdl.train.checkpoint import (
        copy_optimizer_state,
        load_latest_checkpoint,
        optimizer_state,
        restore,
    )
    from sparkdl.train.distributed import (
        MetricSumCallback,
        broadcast_from_rank0,
        compile_forward_with_xla,
        distributed_optimizer,
    )
    from sparkdl.train.serialize import model_from_bytes, model_to_bytes

    distributed = size > 1  # one rank needs no gradient averaging or broadcasts
    model = model_from_bytes(spec.model, spec.custom_objects, compile=False)
    if spec.jit_compile:
        compile_forward_with_xla(model)
    optimizer = _optimizer(spec, model, lr_scale=size)
    if distributed:
        optimizer = distributed_optimizer(optimizer)
    # not Keras' "auto": on a GPU host it XLA-compiles the whole train step, Horovod's
    # collectives included, which have no XLA kernels (see compile_forward_with_xla)
    model.compile(optimizer=optimizer, jit_compile=False, **spec.compile_args)
    optimizer.build(model.trainable_variables)

    ckpt = load_latest_checkpoint(spec.store, spec.run_id)
    initial_epoch, run_history = 0, {}
    if ckpt is not None:
        restore(model, ckpt, lr_scale=size)
        initial_epoch, run_history = ckpt.epoch, ckpt.history

    meta = spec.meta
    train_steps = spec.train_steps or steps_per_epoch(meta.train_rows, spec.batch_size, size)
    train_ds, val_ds = _datasets(spec, model, rank, size)
    val_steps = None
    if val_ds is not None:
        val_steps = spec.val_steps or steps_per_epoch(meta.val_rows, spec.val_batch_size, size)
    callbacks = list(spec.callbacks)
    if distributed:
        # Start every rank from rank 0's weights and optimizer state (a resume's too) once,
        # rather than through a callback hooked on every batch.
        broadcast_from_rank0(model.variables, "model")
        broadcast_from_rank0(optimizer.variables, "optimizer")
        callbacks.insert(0, MetricSumCallback(train_steps, val_steps))
    checkpoints = CheckpointCallback(spec.store, spec.run_id, run_history, lr_scale=size)
    if rank == 0:
        callbacks += [checkpoints, ProgressCallback(spec.epochs)]
        # Keras writes TensorBoard logs with tf.summary: a torch-only runtime has none
        if importlib.util.find_spec("tensorflow") is not None:
            callbacks.append(RunTensorBoard(spec.store, spec.run_id))
        else:
            log.info("TensorFlow is not installed: run %s keeps no TensorBoard logs", spec.run_id)
    callbacks.append(HeartbeatCallback())
    heartbeat(force=True)  # model built, checkpoint restored, datasets open
    history = model.fit(
        train_ds, epochs=spec.epochs, initial_epoch=initial_epoch, steps_per_epoch=train_steps,
        validation_data=val_ds, validation_steps=val_steps, callbacks=callbacks,
        verbose=2 if spec.verbose >= 2 and rank == 0 else 0,
        shuffle=False)  # the shard reader shuffles; Keras cannot shuffle a tf.data.Dataset
    hvd.shutdown()  # leave Horovod together; the process then exits without interpreter teardown
    if rank != 0:
        return None
    # The returned model carries a plain optimizer with the user's own config (learning rate or
    # schedule) and the state training reached, so it can be saved, loaded and trained further.
    plain = _optimizer(spec, model, lr_scale=1.0)
    state = optimizer_state(optimizer)
    model.compile(optimizer=plain, **spec.compile_args)
    copy_optimizer_state(plain, state, model.trainable_variables)
    fit_history = {k: [float(x) for x in v] for k, v in history.history.items()}
    fit_history["epoch"] = [e + 1 for e in history.epoch]
    return {"model": model_to_bytes(model), "history": fit_history,
            "run_history": checkpoints.history}


def _share_cores(threads: int) -> None:
    """Use `threads` for the framework's intra-op work: the host's cores among its ranks."""
    import keras

    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(threads)
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # TF already initialised, e.g. by unpickling Keras Metric objects
        log.info("TensorFlow was initialised before training; keeping its thread count")


def _optimizer(spec: KerasTrainSpec, model: Any, lr_scale: float) -> Any:
    """The user's optimizer, learning rate times `lr_scale`; wrapped in a LossScaleOptimizer for
    a mixed_float16 model here rather than by `compile`, so that the wrapper is inside the
    distributed optimizer and sees averaged gradients (all ranks skip the same steps)."""
    import keras

    from sparkdl.train.serialize import optimizer_from_config

    optimizer = optimizer_from_config(spec.optimizer, lr_scale, spec.custom_objects)
    # a reloaded model's own policy is the process's global one; its layers keep theirs
    float16 = any(layer.dtype_policy.name == "mixed_float16" for layer in [model, *model.layers])
    if float16 and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _datasets(spec: KerasTrainSpec, model: Any, rank: int, size: int) -> tuple[Any, Any]:
    """The rank's train shard and val shard (or None), features shaped for the model: tf.data
    on TensorFlow, generators of numpy batches on torch (no TensorFlow imported)."""
    import keras

    from sparkdl.data.reader import open_shard_batches, open_shard_dataset
    from sparkdl.train.signature import model_signature

    meta, store = spec.meta, spec.store
    shapes = model_signature(model).input_shapes
    stored = [meta.columns[c].shape for c in meta.feature_cols]
    same = all(_same(a, b) for a, b in zip(shapes, stored, strict=True))
    if keras.backend.backend() == "torch":
        def shard(path: str, batch_size: int, shuffle: bool) -> Any:
            return open_shard_batches(
                store.dataset_url(path), rank, size, batch_size, meta=meta, shuffle=shuffle,
                seed=spec.seed, storage_options=store.storage_options,
                input_shapes=None if same else shapes)

        val_batches = None
        if meta.val is not None and meta.val_rows > 0:  # repeated: see the tf.data case
            val_batches = _restarting(lambda: shard(meta.val_path, spec.val_batch_size, False))
        return shard(meta.train_path, spec.batch_size, spec.shuffle), val_batches
    train = open_shard_dataset(store.dataset_url(meta.train_path), rank, size, spec.batch_size,
                               meta=meta, shuffle=spec.shuffle, seed=spec.seed,
                               storage_options=store.storage_options)
    val = None
    if meta.val is not None and meta.val_rows > 0:
        # Repeated, and read `val_steps` batches an epoch (one pass unless the user says
        # otherwise): Keras 3.2 keeps one validation iterator across epochs, and once a finite
        # one had ended it ran no step on the next epoch (val metrics 0.0 every other epoch);
        # later versions start a fresh iterator or keep it. Either way each epoch scores every
        # row once.
        val = open_shard_dataset(store.dataset_url(meta.val_path), rank, size,
                                 spec.val_batch_size, meta=meta, shuffle=False, seed=spec.seed,
                                 num_epochs=None, storage_options=store.storage_options)
    if same:
        return train, val
    reshape = _reshaper(shapes, len(meta.feature_cols) == 1)
    return train.map(reshape), (val.map(reshape) if val is not None else None)


def _restarting(open_batches: Callable[[], Iterator[Any]]) -> Any:
    """Batches that start again from the first at each `iter`, as a tf.data.Dataset does: Keras
    on torch restarts its validation iterator every epoch, where a generator would go on."""
    import torch

    class Batches(torch.utils.data.IterableDataset):
        def __iter__(self) -> Iterator[Any]:
            return open_batches()

    return torch.utils.data.DataLoader(Batches(), batch_size=None)


def _same(model_shape: tuple, stored: tuple) -> bool:
    return len(model_shape) == len(stored) and all(
        m is None or m == s for m, s in zip(model_shape, stored, strict=True))


def _reshaper(shapes: list[tuple], single: bool) -> Any:
    import tensorflow as tf

    def fix(shape: tuple, x: Any) -> Any:
        return tf.reshape(x, (-1, *[-1 if d is None else d for d in shape]))

    def reshape(features: Any, *rest: Any) -> Any:
        if single:
            return (fix(shapes[0], features), *rest)
        return (tuple(fix(s, x) for s, x in zip(shapes, features, strict=True)), *rest)

    return reshape


