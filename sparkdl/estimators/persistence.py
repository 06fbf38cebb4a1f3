"""MLWritable/MLReadable for stages holding Python objects: JSON params plus binary blobs.

Metadata goes through pyspark's DefaultParamsWriter; objects that are not JSON (the Keras model,
optimizer, custom objects) are written as a small Parquet table of named blobs, so any path Spark
can write (local, hdfs://, dbfs:/, s3a://) works.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from pyspark.ml.util import (
    DefaultParamsReader,
    DefaultParamsWriter,
    MLReadable,
    MLReader,
    MLWritable,
    MLWriter,
)

from sparkdl.launch.session import session_of

logger = logging.getLogger(__name__)

BLOBS = "blobs"


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


class BlobParamsWriter(MLWriter):
    """Writes the instance's JSON-able params as metadata and `instance._blobs()` as Parquet."""

    def __init__(self, instance: Any) -> None:
        super().__init__()
        self.instance = instance

    def _handleOverwrite(self, path: str) -> None:
        """Remove `path` before an overwrite, through the session (pyspark's own way needs the
        JVM, which a Spark Connect client has not)."""
        session_of(self.sparkSession).delete(path)

    def save(self, path: str) -> None:
        """Serialise the stage first: one that cannot be saved fails before anything at `path`
        is touched (an overwrite then keeps the earlier save)."""
        self._rows = [(name, bytearray(data)) for name, data in self.instance._blobs().items()]
        try:
            super().save(path)
        finally:
            del self._rows

    def saveImpl(self, path: str) -> None:
        rows = self._rows
        params = {p.name: v for p, v in self.instance._paramMap.items() if _jsonable(v)}
        session = session_of(self.sparkSession)
        if not self.shouldOverwrite and session.exists(path):  # MLWriter.save does not check
            raise FileExistsError(f"path {path!r} already exists; expected a new path (use "
                                  "write().overwrite().save(path) to replace what is there)")
        try:
            DefaultParamsWriter.saveMetadata(self.instance, path, session.ml_context,
                                             extraMetadata=self.instance._extra_metadata(),
                                             paramMap=params)
            (self.sparkSession.createDataFrame(rows, "name string, data binary").coalesce(1)
             .write.parquet(f"{path}/{BLOBS}"))
        except BaseException:
            try:
                session.delete(path)  # no half-written stage (the path was free or overwritten)
            except Exception:  # e.g. a scheme only Spark reads: the save's own error matters
                logger.warning("could not remove the half-written %s", path, exc_info=True)
            raise


class BlobParamsReader(MLReader):
    """Reads what BlobParamsWriter wrote into a new instance of `cls`."""

    def __init__(self, cls: type) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> Any:
        spark = self.sparkSession
        metadata = DefaultParamsReader.loadMetadata(path, session_of(spark).ml_context)
        instance = self.cls()
        DefaultParamsReader.getAndSetParams(instance, metadata)
        instance._resetUid(metadata["uid"])
        rows = spark.read.parquet(f"{path}/{BLOBS}").collect()
        blobs = {r["name"]: bytes(r["data"]) for r in rows}
        instance._restore(blobs, metadata)
        return instance


class BlobPersistence(MLWritable, MLReadable):
    """Mixin: save/load through BlobParamsWriter/Reader. Subclasses provide `_blobs()`,
    `_extra_metadata()` and `_restore(blobs, metadata)`."""

    def write(self) -> BlobParamsWriter:
        return BlobParamsWriter(self)

    @classmethod
    def read(cls) -> BlobParamsReader:
        return BlobParamsReader(cls)

    def _extra_metadata(self) -> dict[str, Any]:
        return {}
