"""Batch inference on executors: a scalar-iterator pandas UDF, model inputs in, outputs out.

Only the model's input columns reach Python and only its outputs come back (the rest of each row
stays in the JVM); the model is loaded once per Python worker and device.
"""
from __future__ import annotations

import contextlib
import gc
import ipaddress
import os
import socket
import stat
import sys
import threading
import zipimport
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd

from sparkdl.data.meta import STRING
from sparkdl.launch.gpus import GROWTH_ENV, VISIBLE_ENV, inference_device, task_gpus
from sparkdl.train.backend import use_backend

_models: dict[tuple[str, str | None], Any] = {}  # (model key, device) -> forward pass
_lock = threading.Lock()


@dataclass(frozen=True)
class PredictSpec:
    """What the inference function needs; the model bytes travel apart (a broadcast, or inline
    in the UDF on Spark Connect)."""

    model_key: str  # digest of the model bytes: the per-worker cache key
    input_shapes: Sequence[tuple]  # per-row shapes the model expects (None for free dims)
    input_dtypes: Sequence[str]  # numpy dtype per input, as the data holds it
    scalar_outputs: Sequence[bool]  # one value per row (float column) or an array column
    batch_size: int
    use_gpu: bool | None = None  # None: the task's Spark-scheduled GPU when it has one
    backend: str = "tensorflow"  # the Keras backend the workers predict on


def make_predict_fn(spec: PredictSpec, model_bytes: Any, custom_objects: bytes
                    ) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The pandas UDF's function: batches of the inputs (a struct, one field per model input:
    arrays or scalars of `spec.input_dtypes`) to batches of the outputs (a struct, one field per
    output). `model_bytes` holds the `.keras` bytes as `.value` (a Broadcast or `Inline`),
    `custom_objects` the pickled dict of custom Keras objects."""

    def predict(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        settle_task()
        use_backend(spec.backend)
        forward = _load(spec, model_bytes, custom_objects)
        for batch in batches:
            yield _predict_batch(forward, spec, batch)

    return predict


def settle_task() -> None:
    """What an inference task does first in a Spark Python worker: its link to the executor
    acknowledges at once, and later tasks re-read only the zips that changed."""
    acknowledge_at_once()
    reread_only_changed_zips()


def reread_only_changed_zips() -> None:
    """Make `importlib.invalidate_caches()` re-read a zip on `sys.path` only when it changed.

    A reused Spark Python worker calls it before every task, and Python before 3.13 then re-reads
    the directory of every zip importer: pyspark.zip once per imported subpackage, py4j, a jar,
    60-120 ms per task. Patched once per worker (from then on for every task it runs)."""
    if sys.version_info >= (3, 13) or getattr(zipimport.zipimporter.invalidate_caches,
                                              "_sparkdl", False):
        return
    reread = zipimport.zipimporter.invalidate_caches
    read_at: dict[str, tuple[int, int] | None] = {}

    def invalidate_caches(self: zipimport.zipimporter) -> None:
        try:
            stat = os.stat(self.archive)
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        if stamp is None or read_at.get(self.archive) != stamp:
            reread(self)
            read_at[self.archive] = stamp
        else:  # another importer of the same archive may have re-read it already
            self._files = zipimport._zip_directory_cache.get(self.archive, self._files)

    invalidate_caches._sparkdl = True  # type: ignore[attr-defined]
    zipimport.zipimporter.invalidate_caches = invalidate_caches  # type: ignore[method-assign]


def acknowledge_at_once() -> None:
    """Make the worker's loopback TCP sockets (its link to the executor) acknowledge and send
    at once: TCP_QUICKACK, TCP_NODELAY.

    The JVM sends a task's command and its first input batch in two writes without TCP_NODELAY,
    so the batch waits for the worker to acknowledge the command, which Linux delays by up to
    40 ms once a connection has settled into request and reply. Called per task, since quick
    acknowledgement does not last. Linux only (no-op elsewhere)."""
    if not hasattr(socket, "TCP_QUICKACK") or not os.path.isdir("/proc/self/fd"):
        return
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = int(name)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            with socket.socket(fileno=os.dup(fd)) as sock:
                if (sock.family not in (socket.AF_INET, socket.AF_INET6)
                        or sock.type != socket.SOCK_STREAM
                        or not ipaddress.ip_address(sock.getpeername()[0]).is_loopback):
                    continue
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except (OSError, ValueError):  # closed meanwhile, not connected, not an IP peer
            continue


def _task_device(use_gpu: bool | None) -> str | None:
    """The running task's device (TensorFlow's name): its Spark-scheduled GPU, the CPU, or None."""
    from pyspark import TaskContext

    addresses = task_gpus(TaskContext.get())
    if not addresses and use_gpu is not False:
        return None  # no import of the framework's GPU list needed: default placement
    return inference_device(addresses, use_gpu, _gpu_count(), os.environ.get(VISIBLE_ENV))


def _gpu_count() -> int:
    import keras

    if keras.backend.backend() == "torch":
        import torch

        return torch.cuda.device_count()
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def _load(spec: PredictSpec, model_bytes: Any, custom_objects: bytes) -> Any:
    """The model's compiled forward pass on the task's device, built once per Python worker,
    model and device."""
    os.environ.setdefault(GROWTH_ENV, "true")  # workers sharing a GPU never take all its memory
    device = _task_device(spec.use_gpu)
    key = (spec.model_key, device)
    with _lock:
        if key not in _models:
            _one_thread()  # Spark runs one Python worker per task slot
            from sparkdl.train.serialize import model_from_bytes

            stale = [k for k in _models if k[0] != spec.model_key]  # a new fit's model
            if stale:
                gc.unfreeze()  # the replaced model's reference cycles become collectable
                for old in stale:
                    del _models[old]
            with _on(device):
                model = model_from_bytes(model_bytes.value, cloudpickle.loads(custom_objects),
                                         compile=False)
            _models[key] = forward_fn(model, spec.input_shapes, device, spec.input_dtypes)
            freeze_heap()
        return _models[key]


def _one_thread() -> None:
    import keras

    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(1)
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already initialised in this worker


def freeze_heap() -> None:
    """Keep the objects that exist now (TensorFlow's modules, the model) out of every later
    garbage collection.

    Spark's daemon runs `gc.collect()` after each task, and the worker takes its next task only
    once it returns: over TensorFlow's ~430k objects that took 0.19 s per task."""
    gc.collect()
    gc.freeze()


def _on(device: str | None) -> Any:
    """A scope placing Keras' work on `device` (TensorFlow's name, "/GPU:1"; None: default)."""
    import keras

    if not device:
        return contextlib.nullcontext()
    if keras.backend.backend() == "torch":
        kind, ordinal = device.strip("/").split(":")
        return keras.device("cpu" if kind == "CPU" else f"cuda:{ordinal}")
    import tensorflow as tf

    return tf.device(device)


def forward_fn(model: Any, input_shapes: Sequence[tuple], device: str | None = None,
               input_dtypes: Sequence[str] | None = None) -> Any:
    """The model's forward pass over inputs of `input_shapes` and `input_dtypes` (default
    float32), on `device` (None: default placement); returns the flat outputs as numpy. On
    TensorFlow it is traced once as a tf.function; on torch it runs without autograd."""
    import keras

    if keras.backend.backend() == "torch":
        return _torch_forward(model, device)
    import tensorflow as tf

    dtypes = input_dtypes or ["float32"] * len(input_shapes)
    signature = [tf.TensorSpec((None, *shape), tf.as_dtype(dtype))
                 for shape, dtype in zip(input_shapes, dtypes, strict=True)]

    # One traced graph for every batch: predict_on_batch builds a tf.data pipeline per call,
    # which costs more than the forward pass of a small model.
    @tf.function(input_signature=signature)
    def forward(*inputs: Any) -> list[Any]:
        with _on(device):
            out = model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
        return keras.tree.flatten(out)

    return forward


def _torch_forward(model: Any, device: str | None) -> Any:
    import keras
    import torch

    def forward(*inputs: Any) -> list[Any]:
        with torch.no_grad(), _on(device):
            out = model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
        return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(out)]

    return forward


def predict_arrays(forward: Any, inputs: Sequence[np.ndarray], batch_size: int
                   ) -> list[np.ndarray]:
    """One array per model output for all rows of `inputs`, `batch_size` rows per call."""
    chunks = []
    for start in range(0, len(inputs[0]), batch_size):
        out = forward(*[a[start:start + batch_size] for a in inputs])
        chunks.append([np.asarray(t) for t in out])
    return [np.concatenate([c[j] for c in chunks]) for j in range(len(chunks[0]))]


def _column_array(column: pd.Series, shape: tuple, dtype: str) -> np.ndarray:
    """The column as one array of (rows, *shape) and `dtype` (strings: of str objects); array
    cells arrive as one ndarray each and are joined in one copy."""
    values = column.to_numpy()
    strings = dtype == STRING
    if values.dtype == object and len(values) and isinstance(values[0], np.ndarray):
        values = np.concatenate(values)
    if (strings and pd.isna(values).any() or values.dtype.kind == "f"
            and np.dtype(dtype).kind in "iub" and np.isnan(values).any()):
        raise ValueError(f"an input of type {dtype} holds nulls; expected none (drop or fill "
                         "them before transform)")
    dims = [-1 if d is None else d for d in shape]
    return np.asarray(values, dtype=object if strings else dtype).reshape(len(column), *dims)


def _predict_batch(forward: Any, spec: PredictSpec, batch: pd.DataFrame) -> pd.DataFrame:
    """One output column per model output (named _0, _1, ... as the UDF's struct fields)."""
    n = len(batch)
    if n == 0:
        return pd.DataFrame({f"_{j}": pd.Series([], dtype=np.float32 if scalar else object)
                             for j, scalar in enumerate(spec.scalar_outputs)})
    inputs = [_column_array(batch.iloc[:, i], shape, dtype)
              for i, (shape, dtype) in enumerate(zip(spec.input_shapes, spec.input_dtypes,
                                                      strict=True))]
    outputs = predict_arrays(forward, inputs, spec.batch_size)
    return pd.DataFrame({f"_{j}": _to_series(out, n, scalar)
                         for j, (out, scalar) in enumerate(zip(outputs, spec.scalar_outputs,
                                                              strict=True))})


def _to_series(out: np.ndarray, n: int, scalar: bool) -> pd.Series:
    flat = np.asarray(out, dtype=np.float32).reshape(n, -1)
    return pd.Series(flat[:, 0]) if scalar else pd.Series(list(flat))
