"""One aggregation job over the input (rows, nulls, array sizes): bad data fails before a write."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparkdl.data.meta import STRING, ColumnSpec
from sparkdl.data.schema import column_of

_PARTITION = "__sparkdl_partition"


@dataclass(frozen=True)
class Profile:
    """What the aggregation found: the row count and column specs with every dimension resolved."""

    rows: int
    columns: dict[str, ColumnSpec]
    partitions: int  # of the DataFrame's partitions, those holding rows


def profile_columns(df: DataFrame, specs: Mapping[str, ColumnSpec], roles: Mapping[str, str], *,
                    validation_col: str | None = None, is_val: Column | None = None) -> Profile:
    """Count rows, nulls (also inside arrays) and array sizes in one job; ValueError on bad data.

    `roles` names each column's use ("feature", "label", ...) for the error messages.
    """
    exprs = [F.count(F.lit(1)).alias("rows")]
    for i, spec in enumerate(specs.values()):
        exprs += _checks(column_of(df, spec.name), spec, f"c{i}")
    if validation_col is not None:
        exprs += [_count_true(column_of(df, validation_col).isNull()).alias("val_nulls"),
                  _count_true(is_val).alias("val_rows")]
    # Per input partition, then combined here: one row per partition crosses the shuffle, and
    # the groups count the partitions holding rows (a count_distinct doubled the job's time).
    # The partition id is projected first: a non-deterministic grouping key is refused.
    groups = df.withColumn(_PARTITION, F.spark_partition_id()).groupBy(_PARTITION).agg(
        *exprs).drop(_PARTITION).collect()
    if not groups:
        raise ValueError("DataFrame has no rows; expected at least one row to materialize")
    found = {name: _combine(name, [group[name] for group in groups])
             for name in groups[0].asDict()}
    rows = found["rows"]
    columns = {name: _resolve(spec, found, f"c{i}", f"{roles[name]} column {name!r}", rows)
               for i, (name, spec) in enumerate(specs.items())}
    if validation_col is not None:
        _check_validation(validation_col, found, rows)
    return Profile(rows=rows, columns=columns, partitions=len(groups))


def _combine(name: str, values: list[Any]) -> Any:
    """Partitions' aggregates into the whole DataFrame's: least of minima, greatest of maxima,
    sum of counts; None where no partition had a value."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    pick = min if "_min" in name else max if "_max" in name else sum
    return pick(present)


def _checks(column: Column, spec: ColumnSpec, prefix: str) -> list[Column]:
    """Aggregations for one column: nulls, then per nesting level min/max size and null elements;
    the UTF-8 bytes of a string column's values."""
    exprs = [_count_true(column.isNull()).alias(f"{prefix}_nulls")]
    if spec.dtype == STRING:
        if not spec.shape:
            text = F.octet_length(column)
        else:
            text = F.aggregate(_flatten(column, len(spec.shape) - 1),
                               F.lit(0).cast("long"),
                               lambda total, value: total + F.octet_length(value))
        exprs.append(F.sum(text).alias(f"{prefix}_bytes"))
    if spec.kind == "vector":
        sizes = F.size(F.when(column.isNotNull(), vector_to_array(column)))  # it fails on null
        return exprs + [F.min(sizes).alias(f"{prefix}_min1"), F.max(sizes).alias(f"{prefix}_max1")]
    for level in range(1, len(spec.shape) + 1):
        if level == 1:
            low, high = F.min(F.size(column)), F.max(F.size(column))
        else:
            sizes = F.transform(_flatten(column, level - 2), F.size)
            low, high = F.min(F.array_min(sizes)), F.max(F.array_max(sizes))
        has_null = F.exists(_flatten(column, level - 1), lambda x: x.isNull())
        exprs += [low.alias(f"{prefix}_min{level}"), high.alias(f"{prefix}_max{level}"),
                  _count_true(has_null).alias(f"{prefix}_null_elements{level}")]
    return exprs


def _resolve(spec: ColumnSpec, found: dict[str, Any], prefix: str, what: str,
             rows: int) -> ColumnSpec:
    nulls = found[f"{prefix}_nulls"]
    if nulls:
        raise ValueError(f"{what} has {nulls} null value(s) in {rows} rows; "
                         "expected none (drop or fill them first)")
    depth = len(spec.shape)
    for level in range(1, depth + 1):
        bad_rows = found.get(f"{prefix}_null_elements{level}")
        if bad_rows:
            raise ValueError(f"{what} has null array elements in {bad_rows} row(s); expected none")
    shape = []
    for level in range(1, depth + 1):
        low, high = found[f"{prefix}_min{level}"], found[f"{prefix}_max{level}"]
        where = f" at nesting level {level}" if depth > 1 else ""
        if low != high:
            raise ValueError(f"{what} has arrays of sizes {low} to {high}{where}; "
                             "expected the same size in every row")
        if low == 0:
            raise ValueError(f"{what} has empty arrays{where}; expected at least one element")
        shape.append(low)
    if spec.kind == "vector" and spec.shape[0] not in (None, shape[0]):
        raise ValueError(f"{what} has vectors of size {shape[0]} but its ML attribute metadata "
                         f"says {spec.shape[0]}; expected them to agree")
    value_bytes = None
    if spec.dtype == STRING:  # the mean, rounded up: the reader sizes its windows by it
        values = rows * math.prod(shape)
        value_bytes = -(-(found[f"{prefix}_bytes"] or 0) // values)
    return dataclasses.replace(spec, shape=tuple(shape), value_bytes=value_bytes)


def _check_validation(column: str, found: dict[str, Any], rows: int) -> None:
    if found["val_nulls"]:
        raise ValueError(f"validation column {column!r} has {found['val_nulls']} null value(s); "
                         "expected true/false (or 0/non-zero) in every row")
    val_rows = found["val_rows"]
    if val_rows in (0, rows):
        raise ValueError(f"validation column {column!r} marks {val_rows} of {rows} rows for "
                         "validation; expected some rows but not all")


def _flatten(column: Column, times: int) -> Column:
    for _ in range(times):
        column = F.flatten(column)
    return column


def _count_true(condition: Column) -> Column:
    return F.sum(condition.cast("int"))
