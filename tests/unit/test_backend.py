"""The Keras backend a fit runs on: TensorFlow or torch, given to the ranks; JAX refused, and
text refused on torch."""
from __future__ import annotations

import re

import keras
import pytest

from sparkdl.estimators.validation import check_input_kind
from sparkdl.train import backend
from sparkdl.train.signature import ModelSignature


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


@pytest.mark.parametrize("strings, dtype", [(True, "string"), (True, "float32"),
                                            (False, "string")])
def test_text_on_the_torch_backend_is_refused_saying_what_works(strings, dtype):
    signature = ModelSignature(input_shapes=[()], input_names=["review"], output_shapes=[(1,)],
                               input_dtypes=[dtype])
    with pytest.raises(ValueError, match=re.escape(
            "feature column 'text' for model input 'review' is text, and Keras on the torch "
            "backend has no string tensors: string inputs train and predict on the TensorFlow "
            "backend only. Expected KERAS_BACKEND=tensorflow, or numbers made from the strings "
            "in Spark first (pyspark.ml.feature's StringIndexer")):
        check_input_kind(signature, 0, "text", strings, "torch")
    if strings and dtype == "string":
        check_input_kind(signature, 0, "text", strings, "tensorflow")  # string tensors there
