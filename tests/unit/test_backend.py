"""The Keras backend a fit runs on: TensorFlow or torch, given to the ranks; JAX refused."""
from __future__ import annotations

import keras
import pytest

from sparkdl.train import backend


def test_jax_is_refused_saying_why_and_what_to_use(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="'jax'.*none for JAX.*KERAS_BACKEND=torch"):
        backend.session_backend()


def test_ranks_import_keras_on_the_fits_backend_and_preload_its_horovod_ops():
    env = backend.rank_env("torch")
    assert env["KERAS_BACKEND"] == "torch"
    preloaded = env["SPARKDL_PRELOAD"].split(",")
    assert "horovod.torch" in preloaded and not any("tensorflow" in m for m in preloaded)
    assert "horovod.tensorflow" in backend.rank_env("tensorflow")["SPARKDL_PRELOAD"]


def test_a_worker_whose_keras_runs_on_another_backend_fails_naming_both():
    running = keras.backend.backend()
    other = "torch" if running == "tensorflow" else "tensorflow"
    with pytest.raises(RuntimeError, match=f"already runs Keras on '{running}'.*needs '{other}'"):
        backend.use_backend(other)
    backend.use_backend(running)  # the same backend: nothing to do
