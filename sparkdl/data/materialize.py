"""Driver side: write a DataFrame's training columns to Parquet in a Store, once per plan.

Release the data with ``meta.release()`` or by using the result as a context manager:
``with materialize(df, store, ...) as meta: ...`` deletes it on exit.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import logging
import math
import posixpath
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkdl.data.meta import ColumnSpec, DatasetMeta, SplitInfo, bytes_per_row, is_part_file
from sparkdl.data.profile import Profile, profile_columns
from sparkdl.data.schema import FLOAT_DTYPES, column_of, inspect_columns, storage_column
from sparkdl.data.writer import WRITTEN_SCHEMA, make_part_writer
from sparkdl.launch.session import session_of
from sparkdl.store import Store

logger = logging.getLogger(__name__)

ROW_GROUP_BYTES = 16 << 20  # a few reader batches per row group; also the sharding unit
MAX_FILE_BYTES = 128 << 20
MIN_FILE_BYTES = 16 << 20
_SPLIT_COL = "sparkdl_split"
_INTEGRAL = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)


@dataclass(frozen=True)
class _Validation:
    """How rows are split: `is_val` is true for validation rows; `column` when user-given."""

    is_val: Column
    column: str | None


def materialize(df: DataFrame, store: Store, feature_cols: str | Sequence[str],
                label_cols: str | Sequence[str], *, sample_weight_col: str | None = None,
                validation: float | str | None = None, num_proc: int,
                float_dtype: str | None = "float32", seed: int = 42,
                check: Callable[[dict[str, ColumnSpec]], None] | None = None,
                cache_key: str | None = None) -> DatasetMeta:
    """Write the training columns of `df` as Parquet under ``store.data_dir(key)``.

    Reuse: with `cache_key`, whatever was written under that key with the same arguments (the
    user vouches that the data is the same; kept until released). Else the same deterministic
    plan over the same input files (path, size, modification time) within one Spark application
    (released when the driver exits); a plan that is not deterministic or reads a source other
    than files, local data or ranges is written for this call only (`meta.reuse == "once"`).
    Bad input raises ValueError before anything is written. `validation`: None, a fraction in
    (0, 1), or the name of a boolean/integer column (true/non-zero = validation row; not
    written). `check` sees the profiled column specs (all sizes known) before anything is
    written, and may raise.
    """
    features, labels = _names(feature_cols, "feature_cols"), _names(label_cols, "label_cols")
    _check_args(store, num_proc, float_dtype, seed, sample_weight_col)
    roles = _roles(features, labels, sample_weight_col)
    split = _validation(df, validation, seed, roles)
    specs = inspect_columns(df, list(roles), float_dtype,
                            string_cols=[c for c, role in roles.items() if role == "feature"])
    reuse = "key" if cache_key is not None else "app" if reusable(df) else "once"
    key = data_key(df, reuse, cache_key, features=features, labels=labels,
                   weight=sample_weight_col, validation=validation, float_dtype=float_dtype,
                   seed=seed, num_proc=num_proc)
    with _lock_for(key):  # concurrent fits of one DataFrame write it once
        cached = DatasetMeta.load(store, key)
        if cached is not None:
            logger.info("reusing materialized data %s", store.data_dir(key))
            if check is not None:
                check(cached.columns)
            return cached
        by_column = split is not None and split.column is not None
        profile = profile_columns(df, specs, roles,
                                  validation_col=split.column if by_column else None,
                                  is_val=split.is_val if by_column else None)
        if profile.rows < num_proc:
            raise ValueError(f"DataFrame has {profile.rows} rows; expected at least "
                             f"num_proc={num_proc} so that every process gets data")
        if check is not None:
            check(profile.columns)
        app = df.sparkSession.conf.get("spark.app.id")
        _sweep_stale(store, app)
        written = _write(df, store, key, split, profile, num_proc)
        if isinstance(written, DatasetMeta):  # another application published the key meanwhile
            return written
        train, val = written
        meta = DatasetMeta(key=key, feature_cols=features, label_cols=labels,
                           sample_weight_col=sample_weight_col, columns=profile.columns,
                           train=train, val=val, reuse=reuse,
                           app=app if reuse == "app" else None,
                           written_at=time.time(), store=store)
        meta.save()
        if reuse == "app":
            _written_by_this_app.append(meta)
        return meta


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


# Reading these leaves gives the same rows every time (files are checked by size and mtime).
_STABLE_LEAVES = {"LogicalRelation", "HiveTableRelation", "LocalRelation", "Range", "LogicalRDD",
                  "OneRowRelation"}


def reusable(df: DataFrame) -> bool:
    """True when materializing `df` again within this application would write the same rows
    (never known on Spark Connect, whose client cannot inspect the plan)."""
    if session_of(df.sparkSession).connect:
        return False
    plan = df._jdf.queryExecution().analyzed()
    return not _unstable(plan, check_expressions=not plan.deterministic())


def _stable_leaf(leaf: Any) -> bool:
    kind = leaf.getClass().getSimpleName()
    if kind == "LogicalRelation":  # files, not e.g. JDBC, whose table may change under the plan
        return leaf.relation().getClass().getSimpleName() == "HadoopFsRelation"
    return kind in _STABLE_LEAVES


def _seq(scala_seq: Any) -> list[Any]:
    return [scala_seq.apply(i) for i in range(scala_seq.size())]


def _unstable(plan: Any, check_expressions: bool) -> bool:
    """Whether a node reads an unstable source or (when asked) computes a non-deterministic
    expression.

    Spark ML's own UDFs (VectorAssembler's, ...) are marked non-deterministic to keep the
    optimizer from re-evaluating them, not because they are random: they do not count."""
    if not plan.children().size() and not _stable_leaf(plan):
        return True
    stack = _seq(plan.expressions()) if check_expressions else []
    while stack:
        expr = stack.pop()
        if expr.deterministic():
            continue
        children = _seq(expr.children())
        if all(c.deterministic() for c in children) and not _spark_ml_udf(expr):
            return True
        stack.extend(children)
    return any(_unstable(child, check_expressions) for child in _seq(plan.children()))


def _spark_ml_udf(expr: Any) -> bool:
    return (expr.getClass().getSimpleName() == "ScalaUDF"
            and expr.function().getClass().getName().startswith("org.apache.spark.ml."))


def data_key(df: DataFrame, reuse: str, user_key: str | None = None, **params: object) -> str:
    """Key of a materialization (see `materialize` for when a key repeats).

    "app": the analysed plan's semantic hash (meaningful within one JVM, so with the Spark
    application id), the schema and each input file's path, size and modification time."""
    payload: dict[str, object] = {"params": params}
    if reuse == "key":
        payload["user_key"] = user_key
    elif reuse == "app":
        payload.update(plan=df.semanticHash(), schema=df.schema.json(),
                       app=df.sparkSession.conf.get("spark.app.id"),
                       inputs=session_of(df.sparkSession).input_files(df))
    else:
        payload["once"] = uuid.uuid4().hex
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return "ds-" + digest[:24]


_written_by_this_app: list[DatasetMeta] = []


# What a driver that never reached its exit (killed, a kernel restart) left: an application's
# data a week after it was written (no application that long-lived reuses it), and temporary
# directories of writes a day old (no write takes that long).
STALE_APP_DATA_S = 7 * 24 * 3600
STALE_TMP_S = 24 * 3600
_WRITE_PREFIX = "write-"  # a write's directory: write-<seconds since the epoch>-<uuid hex>
_WRITE_NAME = re.compile(rf"^{_WRITE_PREFIX}(\d+)-[0-9a-f]+$")
_swept: set[tuple[str, str]] = set()


def _sweep_stale(store: Store, app: str) -> None:
    """Delete what other applications left in the store's data area (see STALE_APP_DATA_S),
    once per application and store."""
    if (store.url, app) in _swept:
        return
    _swept.add((store.url, app))
    now = time.time()
    for key in store.listdir(store.path("data")):
        if not key.startswith("ds-"):
            continue
        meta = DatasetMeta.load(store, key)
        if (meta is not None and meta.reuse == "app" and meta.app not in (None, app)
                and now - meta.written_at > STALE_APP_DATA_S):
            logger.info("releasing %s, left by application %s", key, meta.app)
            meta.release()
            continue
        published = meta and posixpath.basename(posixpath.dirname(meta.train_path.rstrip("/")))
        for name in store.listdir(store.data_dir(key)):
            started = _WRITE_NAME.match(name)
            if started and name != published and now - int(started.group(1)) > STALE_TMP_S:
                logger.info("removing %s/%s, left by a write that failed or lost a race", key,
                            name)
                store.delete(store.path("data", key, name))


@atexit.register
def _release_app_data() -> None:
    """Data keyed to this application is of no use to another: the store does not keep it."""
    while _written_by_this_app:
        meta = _written_by_this_app.pop()
        try:
            meta.release()
        except Exception:  # best effort at exit; the store may be gone
            logger.warning("could not release materialized data %s", meta.key, exc_info=True)


def num_files(rows: int, row_bytes: int, num_proc: int, parallelism: int) -> int:
    """Files per split when rows are spread round-robin: a multiple of num_proc, files at most
    MAX_FILE_BYTES, and at least `write_tasks` of them."""
    by_size = num_proc * math.ceil(rows * row_bytes / (num_proc * MAX_FILE_BYTES))
    return max(by_size, write_tasks(rows, row_bytes, num_proc, parallelism))


def write_tasks(rows: int, row_bytes: int, num_proc: int, parallelism: int) -> int:
    """Write tasks that use the cluster as long as each writes over MIN_FILE_BYTES: a multiple
    of num_proc. Partitions holding rows at least that many are written without a shuffle."""
    by_parallelism = min(math.ceil(parallelism / num_proc),
                         rows * row_bytes // (num_proc * MIN_FILE_BYTES))
    return num_proc * max(1, by_parallelism)


def _write(df: DataFrame, store: Store, key: str, split: _Validation | None, profile: Profile,
           num_proc: int) -> tuple[SplitInfo, SplitInfo | None] | DatasetMeta:
    """Write into a directory of this write's own under the key's; or return the key's metadata,
    when another application (same cache_key) published it meanwhile.

    Nothing is moved or replaced: the metadata, one file written last, names the directory it
    describes. Two applications writing one key each publish a complete directory of their own
    (the last metadata written wins), so none reads a mix of both writers' files."""
    folder = store.path("data", key, f"{_WRITE_PREFIX}{int(time.time())}-{uuid.uuid4().hex}")
    row_bytes = bytes_per_row(profile.columns.values())
    parallelism = session_of(df.sparkSession).parallelism()
    files = num_files(profile.rows, row_bytes, num_proc, parallelism)
    file_rows = max(1, MAX_FILE_BYTES // row_bytes)
    logger.info("materializing %d rows (~%.1f MiB) into %d files per split at %s",
                profile.rows, profile.rows * row_bytes / 2**20, files, folder)
    specs = list(profile.columns.values())
    try:
        # enough partitions with rows to keep the cluster busy: merge them without a shuffle
        # (a big one is cut into files of at most MAX_FILE_BYTES); else (or when a split then
        # came out with fewer than num_proc files) spread the rows round-robin
        merged = profile.partitions >= write_tasks(profile.rows, row_bytes, num_proc, parallelism)
        if merged:
            _write_parquet(df, store, folder, specs, split, files, file_rows, merge=True)
        if not merged or _fewer_files(store, folder, split, num_proc):
            store.delete(folder)
            _write_parquet(df, store, folder, specs, split, files, file_rows, merge=False)
        train = _split_info(store, f"{folder}/train", num_proc, "train")
        val = _split_info(store, f"{folder}/val", num_proc, "validation") if split else None
        written = DatasetMeta.load(store, key)
    except BaseException:
        store.delete(folder)
        raise
    if written is not None:  # the other application's data may be in use: keep it
        store.delete(folder)
        return written
    return train, val


def _fewer_files(store: Store, tmp: str, split: _Validation | None, num_proc: int) -> bool:
    """Whether a written split has fewer than num_proc files (ranks would then share them)."""
    names = ("train", "val") if split is not None else ("train",)
    return any(store.exists(f"{tmp}/{name}") and len(_parts(store, f"{tmp}/{name}")) < num_proc
               for name in names)


def _parts(store: Store, path: str) -> list[str]:
    return [f"{path}/{name}" for name in store.listdir(path) if is_part_file(name)]


def _write_parquet(df: DataFrame, store: Store, tmp: str, specs: list[ColumnSpec],
                   split: _Validation | None, files: int, file_rows: int, merge: bool) -> None:
    """Write per split `df`'s partitions merged into at most `files` (no shuffle) or its rows
    spread round-robin over `files`; no file holds over `file_rows` rows. Columns and the split
    are computed first, on the input's own partitions."""
    columns = [storage_column(df, spec) for spec in specs]
    if split is not None:
        columns.append(F.when(split.is_val, "val").otherwise("train").alias(_SPLIT_COL))
    selected = df.select(*columns)
    selected = selected.coalesce(files) if merge else selected.repartition(files)
    if not store.spark_writes:
        _write_with_fsspec(selected, store, tmp, specs, split, file_rows)
        return
    writer = (selected.write.option("parquet.block.size", str(ROW_GROUP_BYTES))
              .option("maxRecordsPerFile", str(file_rows)).options(**_dictionary_options(specs)))
    if split is None:
        writer.parquet(store.spark_url(f"{tmp}/train"))
        return
    # One pass writes both splits: each row is assigned exactly once, even if the plan is
    # not deterministic (two filtered writes could overlap or drop rows).
    writer.partitionBy(_SPLIT_COL).parquet(store.spark_url(tmp))
    for name in ("train", "val"):
        written = f"{tmp}/{_SPLIT_COL}={name}"
        if store.exists(written):
            store.move(written, f"{tmp}/{name}")


def _dictionary_options(specs: list[ColumnSpec]) -> dict[str, str]:
    """parquet-mr options writing a dictionary only for the columns that keep one. It splits an
    option's column path at dots: a dotted float array needs the dictionary off by default."""
    if all("." not in spec.name for spec in specs if not spec.dictionary_encoded):
        return {f"parquet.enable.dictionary#{spec.parquet_leaf}": "false"
                for spec in specs if not spec.dictionary_encoded}
    return {"parquet.enable.dictionary": "false",
            **{f"parquet.enable.dictionary#{spec.parquet_leaf}": "true"
               for spec in specs if spec.dictionary_encoded and "." not in spec.name}}


def _write_with_fsspec(selected: DataFrame, store: Store, tmp: str, specs: list[ColumnSpec],
                       split: _Validation | None, file_rows: int) -> None:
    """The executors write each partition through the store's fsspec filesystem; files that no
    successful task reported (left by a failed attempt) are removed."""
    group_rows = max(1, ROW_GROUP_BYTES // bytes_per_row(specs))
    write = make_part_writer(store, tmp, _SPLIT_COL if split is not None else None, group_rows,
                             file_rows, specs)
    written = {row.file for row in selected.mapInArrow(write, WRITTEN_SCHEMA).collect()}
    for name in ("train", "val"):
        for part in _parts(store, f"{tmp}/{name}"):
            if part not in written:
                store.delete(part)


def _split_info(store: Store, path: str, num_proc: int, what: str) -> SplitInfo:
    """Rows, bytes and row groups of a written split, from the Parquet footers (no Spark job)."""
    parts = _parts(store, path)
    rows = row_groups = size = 0
    for part in parts:
        with store.open(part) as f:
            footer = pq.read_metadata(f)
        rows, row_groups = rows + footer.num_rows, row_groups + footer.num_row_groups
        size += store.size(part)
    if rows < num_proc:
        raise ValueError(f"the {what} split has {rows} row(s); expected at least "
                         f"num_proc={num_proc} so that every process gets a shard (use fewer "
                         "processes or more data)")
    return SplitInfo(path=path, rows=rows, bytes=size, files=len(parts), row_groups=row_groups)


def _names(cols: str | Sequence[str], param: str) -> list[str]:
    names = [cols] if isinstance(cols, str) else list(cols) if cols is not None else []
    valid = all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names)
    if not names or not valid:
        raise ValueError(f"{param} {cols!r} is invalid; expected a column name or a non-empty "
                         "list of distinct column names")
    return names


def _check_args(store: Store, num_proc: int, float_dtype: str | None, seed: int,
                sample_weight_col: str | None) -> None:
    if not isinstance(store, Store):
        raise ValueError(f"store {store!r} is not a Store; expected Store.create(url)")
    if not isinstance(num_proc, int) or isinstance(num_proc, bool) or num_proc < 1:
        raise ValueError(f"num_proc {num_proc!r} is invalid; expected an int >= 1")
    if float_dtype not in FLOAT_DTYPES:
        raise ValueError(f"float_dtype {float_dtype!r} is invalid; expected one of {FLOAT_DTYPES}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed {seed!r} is invalid; expected an int")
    if sample_weight_col is not None and not (isinstance(sample_weight_col, str)
                                              and sample_weight_col):
        raise ValueError(f"sample_weight_col {sample_weight_col!r} is invalid; expected a column "
                         "name or None")


def _roles(features: list[str], labels: list[str], weight: str | None) -> dict[str, str]:
    """Each written column (once, in feature, label, weight order) and what it is used for."""
    roles: dict[str, str] = {}
    for name, role in [(f, "feature") for f in features] + [(lb, "label") for lb in labels] + (
            [(weight, "sample weight")] if weight else []):
        roles[name] = f"{roles[name]}/{role}" if name in roles else role
    return roles


def _validation(df: DataFrame, validation: float | str | None, seed: int,
                roles: dict[str, str]) -> _Validation | None:
    if validation is None:
        return None
    if isinstance(validation, float) and 0.0 < validation < 1.0:
        return _Validation(is_val=F.rand(seed) < validation, column=None)
    if isinstance(validation, str):
        fields = {f.name: f.dataType for f in df.schema.fields}
        if validation not in fields:
            raise ValueError(f"validation column {validation!r} not found; available columns: "
                             f"{', '.join(fields)}")
        if validation in roles:
            raise ValueError(f"validation column {validation!r} is also a {roles[validation]} "
                             "column; expected a separate column that marks validation rows")
        data_type, column = fields[validation], column_of(df, validation)
        if isinstance(data_type, T.BooleanType):
            return _Validation(is_val=column, column=validation)
        if isinstance(data_type, _INTEGRAL):
            return _Validation(is_val=column != 0, column=validation)
        raise ValueError(f"validation column {validation!r} has type {data_type.simpleString()}; "
                         "expected boolean or integer")
    raise ValueError(f"validation {validation!r} is invalid; expected None, a fraction in (0, 1) "
                     "or the name of a boolean/integer column")
