"""The Keras backend a fit and its inference run on: the driver's own, checked before any job,
and set in the ranks and inference workers before they import Keras.

Horovod has TensorFlow and PyTorch ops, so those are the backends sparkdl trains on.
"""
from __future__ import annotations

import os
from typing import Any

BACKENDS = ("tensorflow", "torch")
BACKEND_ENV = "KERAS_BACKEND"
# What a rank's zygote imports ahead of the ranks it forks (sparkdl.launch.zygote)
PRELOAD = {
    "tensorflow": "tensorflow,keras,horovod.tensorflow,sparkdl.train.keras_worker,"
                  "sparkdl.data.reader",
    "torch": "torch,keras,horovod.torch,sparkdl.train.keras_worker,sparkdl.data.reader",
}


def session_backend() -> str:
    """The backend of this process's Keras, when sparkdl can train on it; else ValueError."""
    import keras

    name = keras.backend.backend()
    if name not in BACKENDS:
        raise ValueError(
            f"the Keras backend is {name!r}; expected 'tensorflow' or 'torch', the backends "
            "Horovod has collective ops for (it has none for JAX). Set KERAS_BACKEND=torch or "
            "KERAS_BACKEND=tensorflow before Keras is first imported")
    return name


def rank_env(backend: str) -> dict[str, str]:
    """The environment a rank (and its zygote) needs to import Keras on `backend`."""
    from sparkdl.launch.zygote import PRELOAD_ENV

    return {BACKEND_ENV: backend, PRELOAD_ENV: PRELOAD[backend]}


def use_backend(backend: str) -> None:
    """Make Keras in this Python worker run on `backend`: set before Keras is imported, or
    checked when it already is (a Spark worker may have imported it for an earlier task)."""
    import sys

    if "keras" not in sys.modules:
        os.environ[BACKEND_ENV] = backend
        return
    loaded = sys.modules["keras"].backend.backend()
    if loaded != backend:
        raise RuntimeError(
            f"this Spark Python worker already runs Keras on {loaded!r}, and the model needs "
            f"{backend!r}; expected one backend per application (set KERAS_BACKEND={backend} "
            "in spark.executorEnv, or turn spark.python.worker.reuse off)")


def horovod() -> Any:
    """Horovod's module for the Keras backend of this process (on a rank: the fit's)."""
    import keras

    if keras.backend.backend() == "torch":
        import horovod.torch as hvd
    else:
        import horovod.tensorflow as hvd
    return hvd
