"""The MLflow model of a trained KerasModel: Keras' own flavour plus a pyfunc that takes the
feature columns of a pandas DataFrame and returns the columns `KerasModel.transform` appends.

A flavour module for `mlflow.models.Model.log`: `save_model` writes it, `_load_pyfunc` loads it
wherever it is served (sparkdl, Keras and TensorFlow installed; no Spark).
"""
from __future__ import annotations

import gc
import json
import logging
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sparkdl.data.meta import STRING
from sparkdl.train.predict import forward_fn, freeze_heap, predict_arrays, settle_task

COLUMNS_FILE = "sparkdl_columns.json"
CUSTOM_OBJECTS_FILE = "sparkdl_custom_objects.pkl"
KERAS_FILE = "model.keras"  # where mlflow.keras.save_model puts the model in its data dir
MAX_LOADED = 4  # models kept per process by _load_pyfunc

_loaded: OrderedDict[tuple, ColumnsModel] = OrderedDict()  # files' identity -> loaded model
_loaded_lock = threading.Lock()


@dataclass(frozen=True)
class Columns:
    """How DataFrame columns map to the model: what transform does, written next to the model."""

    feature_cols: list[str]
    input_shapes: list[tuple]
    output_cols: list[str]
    scalar_outputs: list[bool]
    batch_size: int
    # per input: STRING for text, else "float32"; None (saved before string inputs): all float32
    input_dtypes: list[str] | None = None


def save_model(path: str, mlflow_model: Any, *, keras_model: Any, columns: Columns,
               custom_objects: bytes, signature: Any, pip_requirements: list[str]) -> None:
    """Keras' flavour (`mlflow.keras.load_model` gives the keras.Model) whose pyfunc is ours."""
    import mlflow.keras

    # Keras' flavour takes only tensor signatures, and warns without one: the column signature
    # is set on the MLmodel below.
    keras_log = logging.getLogger("mlflow.keras.save")
    level = keras_log.level
    keras_log.setLevel(logging.ERROR)
    try:
        mlflow.keras.save_model(keras_model, path, mlflow_model=mlflow_model,
                                pip_requirements=pip_requirements)
    finally:
        keras_log.setLevel(level)
    data = os.path.join(path, mlflow_model.flavors["keras"]["data"])
    with open(os.path.join(data, COLUMNS_FILE), "w") as f:
        json.dump(asdict(columns), f)
    with open(os.path.join(data, CUSTOM_OBJECTS_FILE), "wb") as f:
        f.write(custom_objects)
    mlflow_model.flavors["python_function"].update(loader_module=__name__, data="data")
    mlflow_model.signature = signature
    mlflow_model.save(os.path.join(path, "MLmodel"))


def _load_pyfunc(data_path: str) -> ColumnsModel:
    """mlflow.pyfunc's entry point: the model in `data_path` behind its column mapping.

    Loaded once per process while its files stay the same: MLflow's `spark_udf` on a local
    master loads the model again for every task. In a Spark task the loaded heap is then frozen
    out of garbage collection, which the worker runs after every task (see `freeze_heap`)."""
    key = _files_identity(data_path)
    with _loaded_lock:
        if key not in _loaded:
            in_task = _in_spark_task()  # elsewhere the process's gc is left as its owner set it
            _loaded[key] = _read_model(data_path)
            while len(_loaded) > MAX_LOADED:
                _loaded.popitem(last=False)
                if in_task:
                    gc.unfreeze()  # the dropped model's reference cycles become collectable
            if in_task:
                freeze_heap()
        _loaded.move_to_end(key)
        return _loaded[key]


def _files_identity(data_path: str) -> tuple:
    """What tells one saved model from another: each file's real path, inode, size and mtime."""
    identity = []
    for name in (COLUMNS_FILE, CUSTOM_OBJECTS_FILE, KERAS_FILE):
        path = os.path.realpath(os.path.join(data_path, name))
        stat = os.stat(path)
        identity.append((path, stat.st_ino, stat.st_size, stat.st_mtime_ns))
    return tuple(identity)


def _read_model(data_path: str) -> ColumnsModel:
    import cloudpickle

    from sparkdl.train.serialize import model_from_bytes

    with open(os.path.join(data_path, COLUMNS_FILE)) as f:
        body = json.load(f)
    columns = Columns(**{**body, "input_shapes": [tuple(s) for s in body["input_shapes"]]})
    with open(os.path.join(data_path, CUSTOM_OBJECTS_FILE), "rb") as f:
        custom_objects = cloudpickle.load(f)
    with open(os.path.join(data_path, KERAS_FILE), "rb") as f:
        model = model_from_bytes(f.read(), custom_objects, compile=False)
    return ColumnsModel(model, columns)


def _in_spark_task() -> bool:
    """Whether this runs inside a Spark task (pyspark is not needed to serve the model)."""
    pyspark = sys.modules.get("pyspark")
    return pyspark is not None and pyspark.TaskContext.get() is not None


class ColumnsModel:
    """pandas DataFrame of feature columns in; one column per model output out, as transform."""

    def __init__(self, model: Any, columns: Columns) -> None:
        self.columns = columns
        self._dtypes = columns.input_dtypes or ["float32"] * len(columns.input_shapes)
        self._forward = forward_fn(model, columns.input_shapes, input_dtypes=self._dtypes)

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        cols = self.columns
        missing = [c for c in cols.feature_cols if c not in data.columns]
        if missing:
            raise ValueError(f"input has no column(s) {missing}; expected the feature columns "
                             f"{cols.feature_cols}")
        if _in_spark_task():  # MLflow's spark_udf has no per-task hook: settle on each call
            settle_task()
        inputs = [_as_array(data[c], shape, dtype) for c, shape, dtype
                  in zip(cols.feature_cols, cols.input_shapes, self._dtypes, strict=True)]
        outputs = predict_arrays(self._forward, inputs, cols.batch_size)
        n = len(data)
        return pd.DataFrame({name: _as_column(out, n, scalar) for name, out, scalar
                             in zip(cols.output_cols, outputs, cols.scalar_outputs, strict=True)},
                            index=data.index)


def _as_array(column: Any, shape: Sequence[int | None], dtype: str) -> np.ndarray:
    """An array (rows, *shape) of float32 or of str objects (STRING) from a column of values or
    of (nested) arrays/lists."""
    values = column.to_numpy()
    element = object if dtype == STRING else np.float32
    if values.dtype == object and len(values) and not isinstance(values[0], str):
        values = np.stack([np.asarray(v, dtype=element) for v in values])
    dims = [-1 if d is None else d for d in shape]
    return np.asarray(values, dtype=element).reshape(len(column), *dims)


def _as_column(out: np.ndarray, n: int, scalar: bool) -> Any:
    flat = np.asarray(out, dtype=np.float32).reshape(n, -1)
    return flat[:, 0] if scalar else list(flat)
