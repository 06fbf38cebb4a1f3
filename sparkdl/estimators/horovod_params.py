"""Parameters of horovod.spark.keras (0.28.1) that sparkdl does not take, each with what to do
instead: a script moved from horovod gets a TypeError that says how to change it, not Python's
bare "unexpected keyword argument" (docs/migration.md has the whole table).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_REMOVE = "remove it"

# horovod.spark.keras.KerasEstimator's params (constructor and EstimatorParams) -> advice
ESTIMATOR_PARAMS: dict[str, str] = {
    "backend": "sparkdl launches the Horovod ranks itself in a barrier-mode Spark stage; set "
               "num_proc=N instead (default: the cluster's task slots)",
    "backend_env": "set the ranks' environment with the Spark conf spark.executorEnv.<NAME>",
    "data_module": "sparkdl reads the materialised Parquet with its own shard reader; " + _REMOVE,
    "gradient_compression": "gradients are averaged uncompressed; " + _REMOVE + " (to average "
                            "less often, set gradient_accumulation_steps on the Keras optimizer)",
    "continuous_cols": "list every model input in feature_cols, one column per input (assemble "
                       "several columns into one with VectorAssembler)",
    "categorical_cols": "encode categories in the Pipeline (StringIndexer, OneHotEncoder) or with "
                        "Keras preprocessing layers, and list the columns in feature_cols",
    "shuffle_buffer_size": "rows are shuffled in windows of about 64 MiB; use shuffle=True or "
                           "shuffle=False (shuffle_buffer_size=0 meant shuffle=False)",
    "partitions_per_process": "sparkdl sizes the materialised files and shards the rows itself; "
                              + _REMOVE,
    "transformation_fn": "transform the DataFrame in a Pipeline stage before the estimator, or "
                         "inside the model (Keras preprocessing layers, which transform() "
                         "then applies too)",
    "transformation_edit_fields": "horovod.spark.keras ignored it too; " + _REMOVE,
    "transformation_removed_fields": "horovod.spark.keras ignored it too; " + _REMOVE,
    "train_reader_num_workers": "sparkdl's shard reader has no settings; " + _REMOVE,
    "val_reader_num_workers": "sparkdl's shard reader has no settings; " + _REMOVE,
    "reader_pool_type": "sparkdl's shard reader has no settings; " + _REMOVE,
    "label_shapes": "labels keep their column's shape: give the label column the model "
                    "output's shape (nested arrays) or end the model with keras.layers.Reshape",
    "checkpoint_callback": "sparkdl checkpoints every epoch under "
                           "<store>/runs/<run_id>/checkpoints and returns the last epoch's model; "
                           "for the best epoch's weights add keras.callbacks.EarlyStopping("
                           "restore_best_weights=True) to callbacks",
    "inmemory_cache_all": "sparkdl streams every epoch from the store in bounded memory; "
                          + _REMOVE,
    "mp_start_method": "sparkdl starts the rank processes itself; " + _REMOVE,
    "compress_sparse_cols": "vectors, sparse ones too, are stored as dense float32 arrays; "
                            + _REMOVE,
    "backward_passes_per_step": "set gradient_accumulation_steps=<n> on the Keras optimizer, "
                                "e.g. keras.optimizers.Adam(1e-3, gradient_accumulation_steps=4)",
}

_FROM_KERAS = ("wrap a trained keras.Model with KerasModel.from_keras(model, feature_cols, "
               "output_cols, custom_objects=...), or get a KerasModel from KerasEstimator.fit "
               "or KerasModel.load")

# horovod.spark.keras.KerasModel's constructor params -> advice
MODEL_PARAMS: dict[str, str] = {
    "model": _FROM_KERAS,
    "feature_columns": _FROM_KERAS + " (feature_columns is feature_cols there)",
    "label_columns": _FROM_KERAS + " (name the predictions with output_cols)",
    "custom_objects": _FROM_KERAS,
    "history": "a KerasModel's history comes from its fit (getHistory, getRunHistory); "
               + _REMOVE,
    "run_id": "a KerasModel's run_id comes from its fit (getRunId); " + _REMOVE,
    "_metadata": "sparkdl finds output types from the model's output shapes; " + _REMOVE,
    "_floatx": "inputs reach the model as their column's type (floats as float32); " + _REMOVE,
}


def refuse_horovod_params(table: Mapping[str, str]) -> Callable[[F], F]:
    """Decorate a keyword-only method so that a horovod-only keyword raises TypeError with its
    advice from `table`, before the method (or pyspark's ``keyword_only``) sees it."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            name = type(self).__name__
            call = f"{name}()" if method.__name__ == "__init__" else f"{name}.{method.__name__}()"
            check_horovod_params(call, table, kwargs)
            return method(self, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def check_horovod_params(call: str, table: Mapping[str, str], kwargs: Mapping[str, Any]) -> None:
    """Raise TypeError naming each keyword of `kwargs` that `table` lists, with its advice;
    `call` names what was called (``KerasEstimator()``)."""
    found = [name for name in kwargs if name in table]
    if not found:
        return
    advice = "".join(f"\n  {name}: {table[name]}" for name in found)
    raise TypeError(f"{call} does not take {', '.join(found)}, horovod.spark.keras parameter(s) "
                    f"that sparkdl replaces; instead:{advice}\n(see 'Migrating from "
                    "horovod.spark.keras' in sparkdl's docs)")
