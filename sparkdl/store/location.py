"""Parse a user's store URL into a normalised root: local path, dbfs:/ FUSE path, or fsspec URL."""
from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from urllib.parse import urlparse

import fsspec

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_DBFS_FUSE = "/dbfs"
_EXPECTED = (
    "expected a local path, file:///abs/path, dbfs:/path, or a URL whose scheme has an "
    "installed fsspec implementation (s3://, gs://, hdfs://, abfs://, ...)"
)


@dataclass(frozen=True)
class Location:
    """Where a store lives: `root` is what the filesystem understands, `url` what users see."""

    url: str
    root: str
    protocol: str  # "file" for local and dbfs:/ (FUSE), else the fsspec protocol

    @property
    def is_local(self) -> bool:
        return self.protocol == "file"


def parse_location(url: object) -> Location:
    """Validate and normalise a store URL; ValueError names the URL and what was expected."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"store url {url!r} is not a non-empty string; {_EXPECTED}")
    url = url.strip()
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    if scheme in ("", "file"):
        root = _absolute(local_path_of(url) if scheme else os.path.expanduser(url))
        return Location(url=f"file://{root}", root=root, protocol="file")
    if scheme == "dbfs":
        path = posixpath.normpath(_url_path(url, "dbfs"))
        return Location(url=f"dbfs:{path}", root=dbfs_fuse_path(url), protocol="file")
    return _fsspec_location(url, scheme)


def local_path_of(url: str) -> str:
    """The local path of a file: URL (file:///a, file:/a, file://localhost/a)."""
    return _url_path(url, "file")


def dbfs_fuse_path(url: str) -> str:
    """The /dbfs FUSE path of a dbfs:/ URL."""
    path = posixpath.normpath(_url_path(url, "dbfs"))
    return _DBFS_FUSE + (path if path != "/" else "")


def _url_path(url: str, scheme: str) -> str:
    parsed = urlparse(url)
    if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
        raise ValueError(f"store url {url!r} is not a valid {scheme} URL; "
                         f"expected {scheme}:/absolute/path or {scheme}:///absolute/path")
    return parsed.path


def _absolute(path: str) -> str:
    return posixpath.normpath(os.path.abspath(path))


def _fsspec_location(url: str, scheme: str) -> Location:
    try:
        fsspec.get_filesystem_class(scheme)
    except ValueError:
        raise ValueError(f"store url {url!r} has unknown scheme {scheme!r}; {_EXPECTED}") from None
    except ImportError as err:
        raise ValueError(f"store url {url!r} needs the fsspec implementation for {scheme!r}, "
                         f"which is not installed ({err}); install it, e.g. sparkdl[s3]") from None
    body = url[len(scheme) + 1:]
    if not body.startswith("//") or not body.strip("/"):
        raise ValueError(f"store url {url!r} has no location after '{scheme}://'; "
                         f"expected {scheme}://bucket-or-host/path")
    if ".." in body.split("/"):
        raise ValueError(f"store url {url!r} contains '..'; expected a normalised URL")
    root = f"{scheme}:{body.rstrip('/')}"
    return Location(url=root, root=root, protocol=scheme)
