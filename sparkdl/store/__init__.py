"""Store: where intermediate data, run directories and saved models live (local, fsspec, dbfs:/)."""
from __future__ import annotations

from sparkdl.store.store import Store

__all__ = ["Store"]
