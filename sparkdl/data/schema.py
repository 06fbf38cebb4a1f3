"""Driver-side column inspection: which Spark types can be materialized, as which dtype and shape.

Conversions (vector -> array, double -> float, nested -> flat) are JVM expressions, never UDFs.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence

from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.mllib.linalg import VectorUDT as MLlibVectorUDT
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkdl.data.meta import STRING, ColumnSpec

FLOAT_DTYPES = (None, "float32", "float64")
_NUMPY_DTYPES: dict[type[T.DataType], str] = {
    T.BooleanType: "bool",
    T.ByteType: "int8",
    T.ShortType: "int16",
    T.IntegerType: "int32",
    T.LongType: "int64",
    T.FloatType: "float32",
    T.DoubleType: "float64",
    T.StringType: STRING,
}
_SPARK_TYPES = {dtype: spark_type for spark_type, dtype in _NUMPY_DTYPES.items()}
_EXPECTED = "expected a numeric or boolean scalar, a (nested) array of those, or an ML vector"


def inspect_columns(df: DataFrame, cols: Sequence[str], float_dtype: str | None = "float32",
                    string_cols: Collection[str] = ()) -> dict[str, ColumnSpec]:
    """Check that `cols` exist and can be materialized; no Spark job is run. Only `string_cols`
    (features, for a model's string inputs) may hold strings.

    Array sizes (and vector sizes without ML attribute metadata) need the data, so those
    dimensions are None here; materialize() fills them in.
    """
    if float_dtype not in FLOAT_DTYPES:
        raise ValueError(f"float_dtype {float_dtype!r} is invalid; expected one of {FLOAT_DTYPES}")
    fields = {f.name: f for f in df.schema.fields}
    specs = {}
    for name in cols:
        if name not in fields:
            raise ValueError(f"column {name!r} not found; available columns: {', '.join(fields)}")
        specs[name] = _spec(fields[name], float_dtype, name in string_cols)
    return specs


def column_of(df: DataFrame, name: str) -> Column:
    """`df`'s column called `name`, quoted so that dots are part of the name, not struct access."""
    return df["`" + name.replace("`", "``") + "`"]


def storage_column(df: DataFrame, spec: ColumnSpec) -> Column:
    """The column as written to Parquet: a flat array or scalar of `spec.dtype`."""
    data_type = df.schema[spec.name].dataType
    column = column_of(df, spec.name)
    if isinstance(data_type, (VectorUDT, MLlibVectorUDT)):
        return vector_to_array(column, dtype=spec.dtype).alias(spec.name)
    for _ in range(len(spec.shape) - 1):
        column = F.flatten(column)
    target = spark_type(spec.dtype)
    if numpy_dtype(_element_type(data_type)) != spec.dtype:
        column = column.cast(T.ArrayType(target) if spec.shape else target)
    return column.alias(spec.name)


def _spec(field: T.StructField, float_dtype: str | None, string_ok: bool) -> ColumnSpec:
    data_type = field.dataType
    if isinstance(data_type, (VectorUDT, MLlibVectorUDT)):
        size = field.metadata.get("ml_attr", {}).get("num_attrs")
        return ColumnSpec(field.name, float_dtype or "float64", (size,), "vector")
    element, depth = data_type, 0
    while isinstance(element, T.ArrayType):
        element, depth = element.elementType, depth + 1
    dtype = numpy_dtype(element)
    if dtype is None or (dtype == STRING and not string_ok):
        strings = " (strings only as features, for a model's string inputs)" if dtype else ""
        raise ValueError(f"column {field.name!r} has type {data_type.simpleString()}; "
                         f"{_EXPECTED}{strings}")
    if dtype == "float64" and float_dtype:
        dtype = float_dtype
    return ColumnSpec(field.name, dtype, (None,) * depth, "array" if depth else "scalar")


def _element_type(data_type: T.DataType) -> T.DataType:
    while isinstance(data_type, T.ArrayType):
        data_type = data_type.elementType
    return data_type


def numpy_dtype(data_type: T.DataType) -> str | None:
    """The numpy dtype of a Spark numeric or boolean type, STRING for strings; None for others
    (decimals too)."""
    return _NUMPY_DTYPES.get(type(data_type))


def spark_type(dtype: str) -> T.DataType:
    """The Spark type of a numpy dtype name that `numpy_dtype` gives."""
    return _SPARK_TYPES[dtype]()
