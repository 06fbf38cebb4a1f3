"""Batch inference on executors: Arrow record batches in, the same batches plus outputs out.

Used through `DataFrame.mapInArrow`; the model is loaded once per Python worker and features are
read from Arrow buffers without per-row Python work.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle
import numpy as np
import pyarrow as pa

from sparkdl.launch.gpus import GROWTH_ENV, VISIBLE_ENV, inference_device, task_gpus

_models: dict[str, Any] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class PredictSpec:
    """What the inference function needs; the model bytes travel as a Spark broadcast."""

    model_key: str  # digest of the model bytes: the per-worker cache key
    input_cols: Sequence[str]  # float32 array or scalar columns, one per model input
    input_shapes: Sequence[tuple]  # per-row shapes the model expects (None for free dims)
    output_cols: Sequence[str]
    scalar_outputs: Sequence[bool]  # one value per row (float column) or an array column
    batch_size: int
    use_gpu: bool | None = None  # None: the task's Spark-scheduled GPU when it has one


def make_predict_fn(spec: PredictSpec, model_bytes: Any, custom_objects: bytes
                    ) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The mapInArrow function; `model_bytes` is a Broadcast of the `.keras` bytes and
    `custom_objects` the pickled dict of custom Keras objects."""

    def predict(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        forward = _load(spec, model_bytes, custom_objects)
        for batch in batches:
            yield _predict_batch(forward, spec, batch)

    return predict


def _task_device(use_gpu: bool | None) -> str | None:
    """The running task's TensorFlow device: its Spark-scheduled GPU, the CPU, or None."""
    from pyspark import TaskContext

    addresses = task_gpus(TaskContext.get())
    if not addresses and use_gpu is not False:
        return None  # no import of TensorFlow's GPU list needed: default placement
    import tensorflow as tf

    return inference_device(addresses, use_gpu, len(tf.config.list_physical_devices("GPU")),
                            os.environ.get(VISIBLE_ENV))


def _load(spec: PredictSpec, model_bytes: Any, custom_objects: bytes) -> Any:
    """The model's compiled forward pass on the task's device, built once per Python worker,
    model and device."""
    os.environ.setdefault(GROWTH_ENV, "true")  # workers sharing a GPU never take all its memory
    device = _task_device(spec.use_gpu)
    key = (spec.model_key, device)
    with _lock:
        if key not in _models:
            import tensorflow as tf

            try:  # one thread per task: Spark runs one Python worker per task slot
                tf.config.threading.set_intra_op_parallelism_threads(1)
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:
                pass  # TensorFlow already initialised in this worker
            from sparkdl.train.serialize import model_from_bytes

            with _on(device):
                model = model_from_bytes(model_bytes.value, cloudpickle.loads(custom_objects),
                                         compile=False)
            for old in [k for k in _models if k[0] != spec.model_key]:
                del _models[old]  # a new fit's model replaces the old
            _models[key] = forward_fn(model, spec.input_shapes, device)
        return _models[key]


def _on(device: str | None) -> Any:
    import tensorflow as tf

    return tf.device(device) if device else contextlib.nullcontext()


def forward_fn(model: Any, input_shapes: Sequence[tuple], device: str | None = None) -> Any:
    """The model's forward pass traced once as a tf.function over float32 inputs of
    `input_shapes`, on `device` (None: TensorFlow's placement); returns the flat outputs."""
    import keras
    import tensorflow as tf

    signature = [tf.TensorSpec((None, *shape), tf.float32) for shape in input_shapes]

    # One traced graph for every batch: predict_on_batch builds a tf.data pipeline per call,
    # which costs more than the forward pass of a small model.
    @tf.function(input_signature=signature)
    def forward(*inputs: Any) -> list[Any]:
        with _on(device):
            out = model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
        return keras.tree.flatten(out)

    return forward


def predict_arrays(forward: Any, inputs: Sequence[np.ndarray], batch_size: int
                   ) -> list[np.ndarray]:
    """One array per model output for all rows of `inputs`, `batch_size` rows per call."""
    chunks = []
    for start in range(0, len(inputs[0]), batch_size):
        out = forward(*[a[start:start + batch_size] for a in inputs])
        chunks.append([t.numpy() for t in out])
    return [np.concatenate([c[j] for c in chunks]) for j in range(len(chunks[0]))]


def _column_array(column: pa.Array, shape: tuple) -> np.ndarray:
    n = len(column)
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        values = column.flatten().to_numpy(zero_copy_only=False)
    else:
        values = column.to_numpy(zero_copy_only=False)
    dims = [-1 if d is None else d for d in shape]
    return np.asarray(values, dtype=np.float32).reshape(n, *dims)


def _predict_batch(forward: Any, spec: PredictSpec, batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch's own columns (less the prepared inputs, which need not go back to the JVM)
    plus one column per model output."""
    n = batch.num_rows
    kept = [i for i, name in enumerate(batch.schema.names) if name not in spec.input_cols]
    columns = [batch.column(i) for i in kept]
    names = [batch.schema.names[i] for i in kept] + list(spec.output_cols)
    if n == 0:
        empty = [pa.array([], pa.float32()) if scalar else pa.array([], pa.list_(pa.float32()))
                 for scalar in spec.scalar_outputs]
        return pa.RecordBatch.from_arrays(columns + empty, names=names)
    inputs = [_column_array(batch.column(c), s)
              for c, s in zip(spec.input_cols, spec.input_shapes, strict=True)]
    outputs = predict_arrays(forward, inputs, spec.batch_size)
    arrays = [_to_arrow(o, n, scalar)
              for o, scalar in zip(outputs, spec.scalar_outputs, strict=True)]
    return pa.RecordBatch.from_arrays(columns + arrays, names=names)


def _to_arrow(out: np.ndarray, n: int, scalar: bool) -> pa.Array:
    flat = np.asarray(out, dtype=np.float32).reshape(n, -1)
    if scalar:
        return pa.array(flat[:, 0], type=pa.float32())
    offsets = np.arange(0, flat.size + 1, flat.shape[1], dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.reshape(-1), pa.float32()))
