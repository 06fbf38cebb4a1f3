"""Driver-side checks of a KerasEstimator's params against the DataFrame and the model.

Everything here runs before any Spark job; each error names the param or column, the value, and
what was expected.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import cloudpickle
import keras

from sparkdl.data.meta import STRING, ColumnSpec
from sparkdl.store import Store
from sparkdl.train.serialize import LEGACY_KERAS_HELP, require_keras3
from sparkdl.train.signature import ModelSignature, model_signature

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_model(model: Any) -> ModelSignature:
    """`model` is a built Keras 3 model; its per-row input and output shapes."""
    require_keras3()
    if not isinstance(model, keras.Model):
        if type(model).__module__.startswith("tf_keras"):
            raise TypeError(f"model is a legacy Keras 2 (tf_keras) model: {LEGACY_KERAS_HELP}")
        raise TypeError(f"model must be a keras.Model (Keras 3); got {type(model).__name__}")
    return model_signature(model)


def check_columns(param: str, cols: Sequence[str] | None, available: Sequence[str],
                  expected: int | None, what: str) -> list[str]:
    """`cols` exist in the DataFrame and (when `expected` is given) match the model's count."""
    if not cols:
        raise ValueError(f"{param} is empty; expected {expected or 'one or more'} column name(s), "
                         f"one per model {what}")
    missing = [c for c in cols if c not in available]
    if missing:
        raise ValueError(f"{param}: column {missing[0]!r} not found; available columns: "
                         f"{', '.join(available)}")
    if expected is not None and len(cols) != expected:
        raise ValueError(f"{param} has {len(cols)} column(s) {list(cols)} but the model has "
                         f"{expected} {what}(s); expected one column per model {what}")
    return list(cols)


def check_inputs(signature: ModelSignature, feature_cols: Sequence[str],
                 specs: Mapping[str, ColumnSpec], backend: str) -> None:
    """Each feature column fits its model input: strings for a string input (on TensorFlow) and
    numbers for the others, with a per-row size that reshapes to the input's shape."""
    for i, (col, shape, name) in enumerate(zip(feature_cols, signature.input_shapes,
                                               signature.input_names, strict=True)):
        spec = specs[col]
        check_input_kind(signature, i, col, spec.dtype == STRING, backend)
        if any(d is None for d in spec.shape) or any(d is None for d in shape):
            continue  # size known only after materialisation, or a free model dimension
        have = math.prod(spec.shape)
        want = math.prod(shape)
        if have != want:
            raise ValueError(
                f"feature column {col!r} has {have} value(s) per row (shape {spec.shape}) but "
                f"model input {name!r} expects shape {shape} ({want} value(s) per row)")


def check_input_kind(signature: ModelSignature, i: int, col: str, strings: bool,
                     backend: str) -> None:
    """Feature column `col` (of strings or not) fits model input `i` on `backend`: strings go
    to string inputs only, and only Keras on TensorFlow has string tensors."""
    name, takes_strings = signature.input_names[i], signature.takes_strings(i)
    if (strings or takes_strings) and backend != "tensorflow":
        raise ValueError(
            f"feature column {col!r} for model input {name!r} is text, and Keras on the "
            f"{backend} backend has no string tensors: string inputs train and predict on the "
            "TensorFlow backend only. Expected KERAS_BACKEND=tensorflow, or numbers made from "
            "the strings in Spark first (pyspark.ml.feature's StringIndexer, or Tokenizer with "
            "CountVectorizer) for a model with numeric inputs")
    if strings and not takes_strings:
        raise ValueError(
            f"feature column {col!r} holds strings but model input {name!r} takes "
            f"{signature.input_dtypes[i]}; expected a numeric column for it, or a string input "
            "(keras.Input(shape=(), dtype='string') before e.g. a TextVectorization or "
            "StringLookup layer)")
    if takes_strings and not strings:
        raise ValueError(f"model input {name!r} takes strings but feature column {col!r} holds "
                         "numbers; expected a string column for it")


def check_positive(param: str, value: Any, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{param} must be a positive integer; got {value!r}")


def check_seed(param: str, value: Any) -> None:
    """A seed every rank can add its rank to and still give numpy (which takes < 2**32)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise ValueError(f"{param} must be an integer in [0, 2**31) or None; got {value!r}")


def check_validation(value: Any, available: Sequence[str]) -> None:
    if value is None:
        return
    if isinstance(value, str):
        if value not in available:
            raise ValueError(f"validation column {value!r} not found; available columns: "
                             f"{', '.join(available)}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"validation must be a fraction in (0, 1) or a column name; "
                         f"got {value!r}")


def check_store(store: Any) -> Store:
    if store is None:
        raise ValueError("store is not set; expected a sparkdl.Store, e.g. "
                         "KerasEstimator(store=Store.create('/tmp/sparkdl'))")
    if not isinstance(store, Store):
        raise TypeError(f"store must be a sparkdl.Store (Store.create(url)); "
                        f"got {type(store).__name__}")
    store.check_usable()
    return store


def check_run_id(run_id: Any) -> None:
    if run_id is not None and not _RUN_ID.match(run_id):
        raise ValueError(f"run_id {run_id!r} is invalid; expected letters, digits, '_', '.', '-' "
                         "(at most 128 characters)")


def check_picklable(param: str, value: Any) -> None:
    """Ranks receive `value` pickled; fail here, naming the param, when it cannot be."""
    try:
        cloudpickle.dumps(value)
    except Exception as exc:
        raise TypeError(f"{param} cannot be pickled to send to the executors ({exc}); expected "
                        "picklable objects (classes/functions defined at module level or in "
                        "the driver script)") from exc
