"""sparkdl: distributed Keras training as a native Spark ML Pipeline stage.

The Keras stages load lazily, so launcher tasks and `import sparkdl` don't pull in TensorFlow.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sparkdl.launch import run
from sparkdl.store import Store

if TYPE_CHECKING:  # for type checkers and the API docs; at run time __getattr__ imports them
    from sparkdl.estimators import KerasEstimator, KerasModel
    from sparkdl.estimators.history import plot_history

__all__ = ["KerasEstimator", "KerasModel", "Store", "plot_history", "run"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("KerasEstimator", "KerasModel"):
        from sparkdl import estimators

        return getattr(estimators, name)
    if name == "plot_history":
        from sparkdl.estimators.history import plot_history

        return plot_history
    raise AttributeError(f"module 'sparkdl' has no attribute {name!r}")
