"""Driver side: what sparkdl needs from a SparkSession, on a classic session (a SparkContext in
this process) or on a Spark Connect session (a client of a remote server: no SparkContext)."""
from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sparkdl.launch.errors import LaunchError
from sparkdl.launch.slots import Executor

DRIVER_HOST_ENV = "SPARKDL_DRIVER_HOST"  # address the executors reach this process at
_LOCAL = re.compile(r"^local\[(\d+|\*)(?:,\s*\d+)?\]$")  # local[N] or local[N, maxFailures]


@dataclass(frozen=True)
class Inline:
    """Bytes that travel inside the task's closure (Spark Connect has no broadcast); like a
    Broadcast, read through `.value`."""

    value: bytes

    def destroy(self) -> None:
        """Nothing to release: the bytes go away with the closure."""


class Session:
    """A classic SparkSession: Spark's status store, broadcasts, job groups and the JVM."""

    connect = False

    def __init__(self, spark: Any) -> None:
        self.spark = spark

    @property
    def owner(self) -> Any:
        """What shipped data belongs to: a broadcast lives as long as its SparkContext."""
        return self.spark.sparkContext

    def conf(self, key: str, default: str | None = None) -> str | None:
        return self.spark.conf.get(key, default)

    @property
    def master(self) -> str:
        return self.conf("spark.master", "") or ""

    def executors(self) -> list[Executor] | None:
        """The live executors (in local mode, the driver) from Spark's status store."""
        summaries = self.spark.sparkContext._jsc.sc().statusStore().executorList(True)
        found = []
        for i in range(summaries.size()):  # a Scala Seq: no converters (Scala 2.12 and 2.13)
            summary = summaries.apply(i)
            gpu = summary.resources().get("gpu")  # a Scala Option
            found.append(Executor(int(summary.totalCores()),
                                  len(gpu.get().addresses()) if gpu.isDefined() else 0))
        return found

    def parallelism(self) -> int:
        return self.spark.sparkContext.defaultParallelism

    @property
    def ml_context(self) -> Any:
        """What pyspark.ml's DefaultParamsWriter/Reader take: the SparkContext (pyspark 3.5
        accepts nothing else), or on Spark Connect the session."""
        return self.spark.sparkContext

    def ship(self, data: bytes) -> Any:
        """`data` on every executor, read through `.value`."""
        return self.spark.sparkContext.broadcast(data)

    def driver_host(self) -> str:
        return os.environ.get(DRIVER_HOST_ENV) or self.conf("spark.driver.host", "127.0.0.1")

    @contextlib.contextmanager
    def job_group(self, group: str, description: str) -> Iterator[None]:
        """Jobs this thread starts in the block belong to `group` (see `cancel`)."""
        self.spark.sparkContext.setJobGroup(group, description, interruptOnCancel=True)
        yield

    def cancel(self, group: str) -> None:
        self.spark.sparkContext.cancelJobGroup(group)

    @contextlib.contextmanager
    def described(self, text: str) -> Iterator[None]:
        """Spark jobs this thread starts in the block carry `text` as their description (Spark
        UI); the previous description comes back after."""
        sc, key = self.spark.sparkContext, "spark.job.description"
        previous = sc.getLocalProperty(key)
        sc.setLocalProperty(key, text)
        try:
            yield
        finally:
            sc.setLocalProperty(key, previous)

    def input_files(self, df: Any) -> list[tuple[str, int, int]]:
        """(path, size, modification time in ms) of every file `df` reads."""
        sc = self.spark.sparkContext
        conf, jvm = sc._jsc.hadoopConfiguration(), sc._jvm
        found = []
        for name in sorted(df.inputFiles()):
            path = jvm.org.apache.hadoop.fs.Path(name)
            status = path.getFileSystem(conf).getFileStatus(path)
            found.append((name, int(status.getLen()), int(status.getModificationTime())))
        return found

    def exists(self, path: str) -> bool:
        """Whether `path` exists, through Hadoop's filesystem (any scheme Spark writes)."""
        filesystem, hadoop_path = self._hadoop(path)
        return bool(filesystem.exists(hadoop_path))

    def delete(self, path: str) -> None:
        """Remove `path` recursively through Hadoop's filesystem (any scheme Spark writes)."""
        filesystem, hadoop_path = self._hadoop(path)
        filesystem.delete(hadoop_path, True)

    def _hadoop(self, path: str) -> tuple[Any, Any]:
        sc = self.spark.sparkContext
        hadoop_path = sc._jvm.org.apache.hadoop.fs.Path(path)
        return hadoop_path.getFileSystem(sc._jsc.hadoopConfiguration()), hadoop_path


class ConnectSession(Session):
    """A Spark Connect session: configuration, job tags and Spark jobs are all it offers."""

    connect = True

    def __init__(self, spark: Any) -> None:
        import pyspark

        if int(pyspark.__version__.split(".")[0]) < 4:
            raise RuntimeError(
                f"sparkdl on a Spark Connect session needs pyspark >= 4.0 (its barrier stages, "
                f"job tags and ML persistence); this is pyspark {pyspark.__version__}. Use a "
                "classic SparkSession (SparkSession.builder.getOrCreate()) or pyspark 4.0")
        super().__init__(spark)

    @property
    def owner(self) -> Any:
        return self.spark

    @property
    def ml_context(self) -> Any:
        return self.spark

    def executors(self) -> list[Executor] | None:
        """The executors the configuration asks for (Spark Connect cannot list live ones): a
        local master's cores, spark.executor.instances or spark.cores.max (standalone) executors
        of spark.executor.cores; None when it does not say."""
        gpus = int(float(self.conf("spark.executor.resource.gpu.amount", "0") or 0))
        cores = local_cores(self.master)
        if cores is not None:
            return [Executor(cores, gpus)]
        per = self.conf("spark.executor.cores", None)
        instances, total = self.conf("spark.executor.instances", None), self.conf(
            "spark.cores.max", None)
        if per and instances:
            return [Executor(int(per), gpus)] * int(instances)
        if total:  # standalone: executors of `per` cores (or one per worker) up to the total
            per = int(per or total)
            return [Executor(per, gpus)] * (int(total) // per)
        return None

    def parallelism(self) -> int:
        found = self.executors()
        return int(self.conf("spark.default.parallelism", None)
                   or sum(e.cores for e in found or []) or 2)

    def ship(self, data: bytes) -> Inline:
        return Inline(data)

    def driver_host(self) -> str:
        """This client's address as seen from the server's side (executors run there)."""
        if os.environ.get(DRIVER_HOST_ENV):
            return os.environ[DRIVER_HOST_ENV]
        server = self.spark.client.host
        if server in ("localhost", "127.0.0.1", "::1"):
            return "127.0.0.1"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((server, 1))  # no packet: picks the interface that routes there
            return probe.getsockname()[0]

    @contextlib.contextmanager
    def job_group(self, group: str, description: str) -> Iterator[None]:
        self.spark.addTag(group)
        try:
            yield
        finally:
            self.spark.removeTag(group)

    def cancel(self, group: str) -> None:
        self.spark.interruptTag(group)

    @contextlib.contextmanager
    def described(self, text: str) -> Iterator[None]:
        """Spark Connect sets no job descriptions; its jobs carry the session's tags."""
        yield

    def input_files(self, df: Any) -> list[tuple[str, int, int]]:
        """Sizes and times from a Spark job's file listing (binaryFile reads no content when
        only these columns are asked for)."""
        names = sorted(df.inputFiles())
        if not names:
            return []
        rows = (self.spark.read.format("binaryFile").load(names)
                .select("path", "length", "modificationTime").collect())
        return sorted((r["path"], int(r["length"]), round(r["modificationTime"].timestamp() * 1000))
                      for r in rows)

    def exists(self, path: str) -> bool:
        """Whether `path` exists where the server writes it: a local path (or dbfs:/) on the
        server's disk, through a Spark task; else through fsspec, False for a scheme this client
        cannot reach (the server's own write then says what is wrong)."""
        local = _server_local_path(path)
        if local is not None:
            return self._on_server(local, remove=False)
        try:
            fs, root = _fsspec(path)
        except ValueError:
            return False
        return bool(fs.exists(root))

    def delete(self, path: str) -> None:
        """Remove `path` recursively where the server writes it (see `exists`); other schemes
        through fsspec, which this client must reach (as it reaches a Store)."""
        local = _server_local_path(path)
        if local is not None:
            self._on_server(local, remove=True)
            return
        fs, root = _fsspec(path)
        if fs.exists(root):
            fs.rm(root, recursive=True)

    def _on_server(self, path: str, remove: bool) -> bool:
        """Whether `path` exists on the server's disk, removing it when `remove`: one task, so
        on the machine of a local master (a local path is no shared place on a cluster)."""
        def check(batches: Iterator[Any]) -> Iterator[Any]:
            import shutil

            import pyarrow as pa

            for _ in batches:
                pass
            found = os.path.lexists(path)
            if remove and found:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
            yield pa.RecordBatch.from_pydict({"found": [found]})

        [row] = self.spark.range(1, numPartitions=1).mapInArrow(check, "found boolean").collect()
        return bool(row["found"])


def _server_local_path(path: str) -> str | None:
    """The local (or dbfs:/ FUSE) path `path` names on the server; None for other schemes. A
    relative path is refused: the server resolves it against its own working directory."""
    from sparkdl.store.location import parse_location

    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", path) and not path.startswith("/"):
        raise ValueError(f"path {path!r} is relative; on Spark Connect the server resolves it "
                         "against its own working directory, which this client cannot see. "
                         "Expected an absolute path or a URI (file:///..., dbfs:/..., s3a://...)")
    try:
        location = parse_location(path)
    except ValueError:  # a scheme with no fsspec filesystem here: the server's to resolve
        return None
    return location.root if location.is_local else None


def _fsspec(path: str) -> tuple[Any, str]:
    import fsspec

    from sparkdl.store.location import parse_location

    location = parse_location(path)
    return fsspec.filesystem(location.protocol), location.root


def session_of(spark: Any) -> Session:
    """The sparkdl view of a classic or Spark Connect SparkSession."""
    if type(spark).__module__.startswith("pyspark.sql.connect"):
        return ConnectSession(spark)
    return Session(spark)


def active_session() -> Session:
    """The SparkSession this thread uses; a LaunchError when there is none."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None and SparkContext._active_spark_context is not None:
        spark = SparkSession.builder.getOrCreate()
    if spark is None:
        raise LaunchError("sparkdl needs an active SparkSession; create one first "
                          "(SparkSession.builder.getOrCreate() or .remote(url) for Spark Connect)")
    return session_of(spark)


def local_cores(master: str) -> int | None:
    """The task slots of a local master (local[N], local[*]), else None."""
    match = _LOCAL.match(master)
    if match is None:
        return 1 if master == "local" else None
    return (os.cpu_count() or 1) if match.group(1) == "*" else int(match.group(1))
