"""Driver side of KerasModel.transform: typed input columns into a pandas UDF on the executors."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.functions import pandas_udf

from sparkdl.data.meta import STRING
from sparkdl.data.schema import column_of, numpy_dtype, spark_type
from sparkdl.estimators import validation as check
from sparkdl.train.backend import session_backend
from sparkdl.train.predict import PredictSpec, make_predict_fn
from sparkdl.train.signature import model_signature

_OUT = "__sparkdl_outputs"
MIN_INFERENCE_BATCH = 512  # rows per forward pass: a training batch size is too small to be fast


def predict_dataframe(df: DataFrame, model_bytes: Any, model_key: str, model: Any,
                      feature_cols: Sequence[str], output_cols: Sequence[str], batch_size: int,
                      custom_objects: bytes, use_gpu: bool | None = None) -> DataFrame:
    """`df` with one prediction column per model output appended; input columns kept as they are.

    `model_bytes` holds the `.keras` bytes as `.value` (a Broadcast or `Inline`), `model_key`
    their digest, `custom_objects` the pickled dict of custom Keras objects; each task predicts
    on its Spark-scheduled GPU unless `use_gpu` is False."""
    signature = model_signature(model)
    check.check_columns("feature_cols", feature_cols, df.columns, len(signature.input_shapes),
                        "input")
    if len(output_cols) != len(signature.output_shapes):
        raise ValueError(f"output_cols has {len(output_cols)} name(s) {list(output_cols)} but the "
                         f"model has {len(signature.output_shapes)} output(s)")
    clash = [c for c in output_cols if c in df.columns]
    if clash:
        raise ValueError(f"output column {clash[0]!r} already exists in the DataFrame; expected "
                         "new names (set output_cols)")
    scalar = scalar_outputs(signature)
    backend = session_backend()
    inputs = [_input_column(df, col) for col in feature_cols]
    for i, (col, (_, dtype)) in enumerate(zip(feature_cols, inputs, strict=True)):
        check.check_input_kind(signature, i, col, dtype == STRING, backend)
    spec = PredictSpec(model_key=model_key, input_shapes=signature.input_shapes,
                       input_dtypes=[dtype for _, dtype in inputs], scalar_outputs=scalar,
                       batch_size=inference_batch_size(batch_size), use_gpu=use_gpu,
                       backend=backend)
    struct = T.StructType([
        T.StructField(f"_{j}", T.FloatType() if s else T.ArrayType(T.FloatType()))
        for j, s in enumerate(scalar)])
    udf = pandas_udf(make_predict_fn(spec, model_bytes, custom_objects), struct)
    struct_in = F.struct(*[column.alias(f"_{i}") for i, (column, _) in enumerate(inputs)])
    # one struct column, then its fields: the UDF runs once per row whatever the outputs
    out = df.withColumn(_OUT, udf(struct_in))
    return out.select(*[column_of(df, c) for c in df.columns],
                      *[out[_OUT][f"_{j}"].alias(c) for j, c in enumerate(output_cols)])


def scalar_outputs(signature: Any) -> list[bool]:
    """Per output, whether it is one value per row (a float column) rather than an array: only
    when provably so, since a free dimension may hold several."""
    return [None not in shape and math.prod(shape) == 1 for shape in signature.output_shapes]


def inference_batch_size(batch_size: int) -> int:
    return max(batch_size, MIN_INFERENCE_BATCH)


def _input_column(df: DataFrame, col: str) -> tuple[Any, str]:
    """The column as its model input gets it, and its numpy dtype: integers, booleans and strings
    as they are, as training feeds them (an id of 2**24 + 1 stays exact), floats and ML vectors
    as float32; nested arrays flattened."""
    data_type = df.schema[col].dataType
    if isinstance(data_type, VectorUDT):
        return vector_to_array(column_of(df, col), "float32"), "float32"
    column, depth = column_of(df, col), 0
    while isinstance(data_type, T.ArrayType):
        data_type, depth = data_type.elementType, depth + 1
    if not isinstance(data_type, T.NumericType | T.BooleanType | T.StringType):
        raise TypeError(f"feature column {col!r} has type {df.schema[col].dataType.simpleString()};"
                        " expected numeric or string scalars, arrays of those, or ML vectors")
    dtype = numpy_dtype(data_type)
    if dtype is None or dtype.startswith("float"):  # decimals too
        dtype = "float32"
    for _ in range(depth - 1):
        column = F.flatten(column)
    element = spark_type(dtype)
    return column.cast(T.ArrayType(element) if depth else element), dtype
