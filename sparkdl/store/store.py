"""Store: one root for intermediate data, run directories and saved models, on any filesystem.

Layout: ``<root>/data/<key>/{train,val}``, ``<root>/runs/<run_id>/{checkpoints,logs}``,
``<root>/models/<name>``. A Store is picklable and builds its fsspec filesystem lazily, so it
works on executors without a SparkSession.
"""
from __future__ import annotations

import logging
import os
import posixpath
import uuid
from typing import IO, Any

import fsspec

from sparkdl.store.location import Location, dbfs_fuse_path, local_path_of, parse_location

logger = logging.getLogger(__name__)

# Top-level folders the store creates and is therefore allowed to delete from.
MANAGED_AREAS = ("data", "runs", "models")
# Filesystems every Spark distribution writes without an extra connector.
_HADOOP_SCHEMES = ("hdfs", "viewfs")


class Store:
    """One root for a fit's materialised data, its runs (checkpoints, logs) and saved models.

    Create one with `Store.create`. Layout: ``<root>/data/<key>/{train,val}`` (Parquet),
    ``<root>/runs/<run_id>/{checkpoints,logs}``, ``<root>/models/<name>``. Single files are
    written atomically (a temporary name, then a rename or copy), and `delete` removes only
    what the store creates. A Store is picklable and opens its filesystem lazily, so it works
    on the executors and the ranks, which use the same `storage_options`.

    Parameters
    ----------
    location : Location
        The parsed root; use `Store.create` rather than this constructor.
    storage_options : dict, default None
        Options for the fsspec filesystem (credentials, endpoint).

    Attributes
    ----------
    storage_options : dict
        The fsspec options. A saved `KerasEstimator` never keeps them.

    Examples
    --------
    >>> store = Store.create("/tmp/sparkdl")
    >>> store = Store.create("s3://bucket/sparkdl", storage_options={"profile": "ml"})
    >>> store.checkpoint_dir("run_1")
    '/tmp/sparkdl/runs/run_1/checkpoints'
    """

    def __init__(self, location: Location, storage_options: dict[str, Any] | None = None):
        self._location = location
        self.storage_options = dict(storage_options or {})
        self._fs: fsspec.AbstractFileSystem | None = None
        self._dropped_options: list[str] = []

    @staticmethod
    def create(url: str, storage_options: dict[str, Any] | None = None) -> Store:
        """A Store rooted at `url`.

        Parameters
        ----------
        url : str
            A local path or ``file:///abs/path``; ``dbfs:/path`` (the ``/dbfs`` FUSE mount on
            Databricks); or any fsspec URL (``s3://``, ``gs://``, ``hdfs://``, ``abfs://``, ...)
            whose filesystem package is installed (``pip install 'sparkdl[s3]'``, ``[gcs]``).
        storage_options : dict, default None
            Passed to the fsspec filesystem: ``key``/``secret``, ``profile``,
            ``endpoint_url``, ...

        Returns
        -------
        Store
            The store; nothing is created until something is written.

        Raises
        ------
        ValueError
            For a URL that cannot be parsed, a local or ``dbfs:/`` path holding ``#`` or ``?``,
            or `storage_options` that is not a dict.
        """
        if storage_options is not None and not isinstance(storage_options, dict):
            raise ValueError(f"storage_options {storage_options!r} is not a dict; expected a "
                             "dict of fsspec filesystem options or None")
        location = parse_location(url)
        if location.is_local and ("#" in url or "?" in url):
            raise ValueError(f"store url {url!r} has '#' or '?' in its path; expected a path "
                             "without them (the Parquet reader's URLs would end the path there)")
        return Store(location, storage_options)

    @property
    def url(self) -> str:
        """Normalised root URL (file:///abs for local paths, dbfs:/path, or the fsspec URL)."""
        return self._location.url

    @property
    def root(self) -> str:
        """Root in the filesystem's own terms: an absolute local path or an fsspec URL."""
        return self._location.root

    # ---- layout -------------------------------------------------------------------------

    def path(self, *parts: str) -> str:
        """`parts` joined under the root; usable with every method of this store."""
        for part in parts:
            if not isinstance(part, str) or not part.strip("/") or ".." in part.split("/"):
                raise ValueError(f"store path part {part!r} is invalid; expected a non-empty "
                                 "relative name without '..'")
        return "/".join([self.root.rstrip("/")] + [p.strip("/") for p in parts])

    def data_dir(self, key: str) -> str:
        """Where the data materialised under `key` lives."""
        return self.path("data", key)

    def run_dir(self, run_id: str) -> str:
        """The directory of run `run_id` (its fingerprint, checkpoints and logs)."""
        return self.path("runs", run_id)

    def checkpoint_dir(self, run_id: str) -> str:
        """Where run `run_id` keeps its checkpoints (the two newest)."""
        return self.path("runs", run_id, "checkpoints")

    def logs_dir(self, run_id: str) -> str:
        """Where run `run_id` keeps its TensorBoard logs (``tensorboard --logdir`` it)."""
        return self.path("runs", run_id, "logs")

    def model_dir(self, name: str) -> str:
        """A place for a saved model called `name`."""
        return self.path("models", name)

    # ---- URLs for other readers/writers ---------------------------------------------------

    def spark_url(self, path: str) -> str:
        """URL for Spark's writers (see `spark_writes`): file:///abs for local and dbfs stores."""
        native = self._native(path)
        return "file://" + native if self._location.is_local else native

    @property
    def spark_writes(self) -> bool:
        """Whether Spark writes this store's data itself (local, dbfs:/, hdfs://); on any other
        filesystem the executors write it through fsspec with `storage_options`, so Spark
        needs no connector (such as Hadoop's S3A) or credentials of its own."""
        return self._location.is_local or self._location.protocol in _HADOOP_SCHEMES

    def dataset_url(self, path: str) -> str:
        """URL of a split for Parquet readers: sparkdl's shard reader, pyarrow, or
        ``petastorm.make_batch_reader`` (pass `storage_options` alongside)."""
        native = self._native(path)
        return "file://" + native if self._location.is_local else native

    def local_path(self, path: str) -> str | None:
        """A local filesystem path when the store is local (or the dbfs FUSE mount), else None."""
        return self._native(path) if self._location.is_local else None

    # ---- file operations -------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        """Whether `path` exists (not from a cache: executors and ranks write here too)."""
        fs, target = self._filesystem(), self._native(path)
        fs.invalidate_cache(target)  # other processes (executors, ranks) write here too
        return fs.exists(target)

    def makedirs(self, path: str) -> None:
        """Create directory `path` and its parents; nothing when it exists."""
        self._filesystem().makedirs(self._native(path), exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        """Sorted base names of the entries of a directory; [] when it does not exist."""
        fs, target = self._filesystem(), self._native(path)
        fs.invalidate_cache(target)
        if not fs.isdir(target):
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(target, detail=False))

    def open(self, path: str, mode: str = "rb") -> IO[bytes]:
        """Open file `path` in binary `mode` through the store's filesystem."""
        return self._filesystem().open(self._native(path), mode)

    def size(self, path: str) -> int:
        """Size of file `path` in bytes."""
        return int(self._filesystem().size(self._native(path)))

    def read_bytes(self, path: str) -> bytes:
        """The content of file `path`."""
        return self._filesystem().cat_file(self._native(path))

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a file atomically: readers see the old content or the new, never a partial file."""
        fs, target = self._filesystem(), self._native(path)
        fs.makedirs(posixpath.dirname(target), exist_ok=True)
        tmp = _temp_sibling(target)
        try:
            with fs.open(tmp, "wb") as f:
                f.write(data)
            fs.mv(tmp, target)
        except BaseException:
            self._remove_quietly(tmp)
            raise

    def put_dir(self, local_dir: str, path: str) -> None:
        """Copy a local directory into the store under a temporary name, then rename to `path`."""
        if not os.path.isdir(local_dir):
            raise ValueError(f"local_dir {local_dir!r} is not a directory; expected an existing "
                             "local directory to copy into the store")
        fs, target = self._filesystem(), self._native(path)
        tmp = _temp_sibling(target)
        try:
            fs.makedirs(tmp, exist_ok=True)
            fs.put(local_dir.rstrip("/") + "/", tmp, recursive=True)
            self._replace_dir(tmp, target)
        except BaseException:
            self._remove_quietly(tmp)
            raise

    def get_dir(self, path: str, local_dir: str) -> None:
        """Copy a store directory's content into `local_dir` (created when missing)."""
        fs, source = self._filesystem(), self._native(path)
        if not fs.isdir(source):
            raise FileNotFoundError(f"store path {path!r} is not a directory")
        os.makedirs(local_dir, exist_ok=True)
        fs.get(source.rstrip("/") + "/", local_dir, recursive=True)

    def move(self, source: str, target: str) -> None:
        """Rename `source` to `target` within the store; `target` must not exist."""
        fs, src, dst = self._filesystem(), self._native(source), self._native(target)
        if fs.exists(dst):
            raise FileExistsError(f"cannot move {source!r} to {target!r}: the target exists")
        fs.makedirs(posixpath.dirname(dst), exist_ok=True)
        self._move_tree(src, dst)

    def delete(self, path: str) -> None:
        """Delete `path` recursively; nothing when it does not exist.

        Parameters
        ----------
        path : str
            A path strictly under ``<root>/data``, ``<root>/runs`` or ``<root>/models``.

        Raises
        ------
        ValueError
            For any other path: the store only deletes what it creates.
        """
        target = self._managed(path)
        fs = self._filesystem()
        if fs.exists(target):
            logger.debug("deleting %s", target)
            fs.rm(target, recursive=True)

    def without_storage_options(self) -> Store:
        """This store without its `storage_options`, which hold keys and secrets: what a saved
        stage keeps. Using it fails, naming the options to pass again with `Store.create`."""
        store = Store(self._location)
        store._dropped_options = sorted(self.storage_options)
        return store

    # ---- internals --------------------------------------------------------------------------

    def check_usable(self) -> None:
        """Raise when this store lost its storage_options in a saved stage (see
        `without_storage_options`), naming them."""
        if self._dropped_options:
            raise ValueError(
                f"store {self.url!r} came from a saved stage, which never keeps storage_options "
                f"(this one had {', '.join(self._dropped_options)}); expected a store with them: "
                f"set it again, e.g. est.setStore(Store.create({self.url!r}, "
                "storage_options={...}))")

    def _filesystem(self) -> fsspec.AbstractFileSystem:
        self.check_usable()
        if self._fs is None:
            self._fs = fsspec.filesystem(self._location.protocol, **self.storage_options)
        return self._fs

    def _native(self, path: str) -> str:
        """`path` (store path or URL of this store's filesystem) in the filesystem's own terms."""
        if not isinstance(path, str) or not path:
            raise ValueError(f"store path {path!r} is invalid; expected a non-empty string")
        if self._location.is_local:
            if path.startswith("file:"):
                return local_path_of(path)
            if path.startswith("dbfs:"):
                return dbfs_fuse_path(path)
            if not path.startswith("/"):
                raise ValueError(f"store path {path!r} is not absolute; expected a path from "
                                 f"Store.path() or a file:// URL")
            return path
        if not path.startswith(self._location.protocol + "://"):
            raise ValueError(f"store path {path!r} is not on this store's filesystem; expected a "
                             f"URL starting with {self._location.protocol}://")
        return path

    def _managed(self, path: str) -> str:
        target = _normalise(self._native(path))
        for area in MANAGED_AREAS:
            prefix = self.path(area) + "/"
            if target.startswith(prefix) and len(target) > len(prefix):
                return target
        areas = ", ".join(self.path(a) for a in MANAGED_AREAS)
        raise ValueError(f"refusing to delete {path!r}: the store only deletes what it creates, "
                         f"i.e. paths strictly under {areas}")

    def _replace_dir(self, tmp: str, target: str) -> None:
        """Rename `tmp` to `target`; an existing `target` is renamed aside first, then removed."""
        fs = self._filesystem()
        if not fs.exists(target):
            self._move_tree(tmp, target)
            return
        old = _temp_sibling(target)
        self._move_tree(target, old)
        self._move_tree(tmp, target)
        fs.rm(old, recursive=True)

    def _move_tree(self, src: str, dst: str) -> None:
        """Rename a file or directory: a rename on local disks; on object stores a copy of each
        file, then a delete (fsspec's recursive move also copies the directories, which are no
        objects there, and current fsspec fails on that)."""
        fs = self._filesystem()
        if self._location.is_local or not fs.isdir(src):
            fs.mv(src, dst, recursive=True)
            return
        root, target = fs._strip_protocol(src).rstrip("/"), fs._strip_protocol(dst).rstrip("/")
        for file in fs.find(root):
            fs.copy(file, target + file[len(root):])
        fs.rm(root, recursive=True)

    def _remove_quietly(self, path: str) -> None:
        try:
            fs = self._filesystem()
            if fs.exists(path):
                fs.rm(path, recursive=True)
        except OSError:
            logger.warning("could not remove temporary %s", path, exc_info=True)

    def __getstate__(self) -> dict[str, Any]:
        # The filesystem holds connections/threads; executors rebuild it lazily.
        return {**self.__dict__, "_fs": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"_dropped_options": [], **state})  # stages saved before it existed

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Store) and other.url == self.url
                and other.storage_options == self.storage_options)

    def __hash__(self) -> int:
        return hash(self.url)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"


def _temp_sibling(target: str) -> str:
    """A hidden, unique name next to `target` (same directory, so a rename stays on one volume)."""
    parent, name = posixpath.split(target.rstrip("/"))
    return f"{parent}/.{name}.tmp-{uuid.uuid4().hex[:12]}"


def _normalise(native: str) -> str:
    if "://" not in native:
        return posixpath.normpath(native)
    scheme, body = native.split("://", 1)
    return f"{scheme}://{posixpath.normpath(body)}"
