"""sparkdl: distributed Keras training as a native Spark ML Pipeline stage.

Public API only; heavy imports (TensorFlow, Horovod) happen lazily where they are used.
"""
from __future__ import annotations

from sparkdl.launch import run

__all__ = ["run"]
__version__ = "0.1.0"
