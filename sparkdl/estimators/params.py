"""Params shared by sparkdl estimators and models, declared the pyspark.ml way.

`with_accessors` gives every Param a camel-cased getter and setter (getBatchSize/setBatchSize),
as pyspark's generated shared params do, without writing each pair by hand.
"""
from __future__ import annotations

from typing import Any, TypeVar

from pyspark.ml.param import Param, Params, TypeConverters

T = TypeVar("T", bound=type)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def with_accessors(cls: T) -> T:
    """Add getX()/setX(value) for each Param declared on `cls` or its bases (existing ones win)."""
    for name in dir(cls):
        param = getattr(cls, name, None)
        if not isinstance(param, Param):
            continue
        getter, setter = f"get{_camel(name)}", f"set{_camel(name)}"
        if not hasattr(cls, getter):
            setattr(cls, getter, lambda self, _n=name: self.getOrDefault(getattr(self, _n)))
            getattr(cls, getter).__doc__ = f"Value of `{name}`: {param.doc}"
        if not hasattr(cls, setter):
            setattr(cls, setter, lambda self, value, _n=name: self._set(**{_n: value}))
            getattr(cls, setter).__doc__ = f"Set `{name}`: {param.doc}"
    return cls


def _param(name: str, doc: str, converter: Any = None) -> Param:
    return Param(Params._dummy(), name, doc, typeConverter=converter or TypeConverters.identity)


def _optional_int(value: Any) -> int | None:
    return None if value is None else TypeConverters.toInt(value)


def _optional_string(value: Any) -> str | None:
    return None if value is None else TypeConverters.toString(value)


def _optional_bool(value: Any) -> bool | None:
    return None if value is None else TypeConverters.toBoolean(value)


def _optional_list_string(value: Any) -> list[str] | None:
    return None if value is None else TypeConverters.toListString(value)


class ColumnParams(Params):
    """Which DataFrame columns feed the model and where predictions go."""

    feature_cols = _param("feature_cols", "input columns, one per model input",
                          _optional_list_string)
    label_cols = _param("label_cols", "label columns, one per model output",
                        _optional_list_string)
    output_cols = _param("output_cols", "prediction columns, one per model output "
                         "(default: '<label>__output')", _optional_list_string)
    batch_size = _param("batch_size", "rows per batch on each rank (training and inference)",
                        TypeConverters.toInt)
    custom_objects = _param("custom_objects", "dict of custom Keras objects needed to load the "
                            "model (layers, losses, metrics)")
    use_gpu = _param("use_gpu", "train and predict on the tasks' Spark-scheduled GPUs: None "
                     "(default) when Spark assigns tasks GPUs, True requires them, False never",
                     _optional_bool)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(feature_cols=None, label_cols=None, output_cols=None, batch_size=32,
                         custom_objects={}, use_gpu=None)

    def resolved_output_cols(self) -> list[str]:
        """output_cols, or '<label>__output' for each label column."""
        return self.getOrDefault(self.output_cols) or [
            f"{c}__output" for c in self.getOrDefault(self.label_cols) or []]


class TrainingParams(ColumnParams):
    """How distributed training runs: data, epochs, ranks, where state lives."""

    sample_weight_col = _param("sample_weight_col", "column of per-row sample weights",
                               _optional_string)
    validation = _param("validation", "validation split: a fraction in (0, 1) or the name of a "
                        "boolean/int column (true/non-zero rows validate)")
    val_batch_size = _param("val_batch_size", "rows per validation batch (default: batch_size)",
                            _optional_int)
    epochs = _param("epochs", "number of epochs to train", TypeConverters.toInt)
    train_steps_per_epoch = _param("train_steps_per_epoch", "batches per epoch on each rank "
                                   "(default: rows / (batch_size * num_proc))", _optional_int)
    validation_steps_per_epoch = _param("validation_steps_per_epoch", "validation batches per "
                                        "epoch on each rank (default: all)", _optional_int)
    shuffle = _param("shuffle", "shuffle training rows every epoch", TypeConverters.toBoolean)
    random_seed = _param("random_seed", "seed for the split, shuffling and initialisation",
                         _optional_int)
    store = _param("store", "sparkdl.Store for materialised data, checkpoints, logs")
    cache_key = _param("cache_key", "reuse the data materialised under this name (you vouch "
                       "that the DataFrame is unchanged), across applications too; default: "
                       "reuse only a deterministic plan over unchanged input files within this "
                       "application", _optional_string)
    run_id = _param("run_id", "name of the run in the store; fitting again with the same run_id "
                    "resumes from its last checkpoint (default: a new id)", _optional_string)
    num_proc = _param("num_proc", "number of Horovod ranks (default: the cluster's task slots)",
                      _optional_int)
    verbose = _param("verbose", "0: silent, 1: one line per epoch on the driver, 2: also Keras' "
                     "own per-epoch lines in rank 0's log", TypeConverters.toInt)
    stall_timeout = _param("stall_timeout", "seconds a rank may go without progress (a batch, "
                           "an epoch) before fit ends it and fails naming it",
                           TypeConverters.toFloat)
    max_retries = _param("max_retries", "relaunches of the ranks from the last checkpoint after "
                         "a rank fails (a lost executor, a signal, a stall); 0 turns this off",
                         TypeConverters.toInt)
    log_to_mlflow = _param("log_to_mlflow", "log params, per-epoch metrics, TensorBoard logs and "
                           "the model to MLflow: None (default) when an MLflow run is active, "
                           "True also starts (or resumes) a run, False never", _optional_bool)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(sample_weight_col=None, validation=None, val_batch_size=None, epochs=1,
                         train_steps_per_epoch=None, validation_steps_per_epoch=None,
                         shuffle=True, random_seed=None, store=None, cache_key=None, run_id=None,
                         num_proc=None, verbose=1, stall_timeout=300.0, max_retries=2,
                         log_to_mlflow=None)
