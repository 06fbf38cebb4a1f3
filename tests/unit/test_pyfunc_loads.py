"""The MLflow pyfunc's loader (`sparkdl.train.pyfunc._load_pyfunc`): MLflow's spark_udf on a local
master calls it for every task, so a process loads a model once, and again when its files change."""
from __future__ import annotations

import json
from dataclasses import asdict

import cloudpickle
import keras
import numpy as np
import pandas as pd
import pytest

from sparkdl.train import pyfunc
from sparkdl.train.serialize import model_to_bytes


def _save(folder, bias: float) -> None:
    """A pyfunc data directory whose model outputs `bias` for every row."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(
        1, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(bias))])
    (folder / pyfunc.KERAS_FILE).write_bytes(model_to_bytes(model))
    columns = pyfunc.Columns(feature_cols=["x"], input_shapes=[(2,)], output_cols=["y"],
                             scalar_outputs=[True], batch_size=512)
    (folder / pyfunc.COLUMNS_FILE).write_text(json.dumps(asdict(columns)))
    (folder / pyfunc.CUSTOM_OBJECTS_FILE).write_bytes(cloudpickle.dumps({}))


def test_a_model_is_loaded_once_per_process_and_again_when_its_files_change(tmp_path):
    rows = pd.DataFrame({"x": [np.array([3.0, 4.0]), np.array([5.0, 6.0])]})
    _save(tmp_path, 1.0)
    first = pyfunc._load_pyfunc(str(tmp_path))
    assert pyfunc._load_pyfunc(str(tmp_path)) is first
    assert first.predict(rows)["y"].tolist() == [1.0, 1.0]

    _save(tmp_path, 2.0)  # another model saved over it: never the stale one
    second = pyfunc._load_pyfunc(str(tmp_path))
    assert second is not first
    assert second.predict(rows)["y"].tolist() == [2.0, 2.0]


@pytest.mark.tensorflow
def test_a_string_input_predicts_from_a_column_of_str(tmp_path):
    """The pyfunc of a model with a text input (what MLflow serves) takes the raw strings."""
    text = keras.Input(shape=(), dtype="string")
    lookup = keras.layers.StringLookup(vocabulary=["bad", "good"], output_mode="one_hot")
    model = keras.Model(text, keras.layers.Dense(1, kernel_initializer="ones",
                                                 use_bias=False)(lookup(text)[:, 1:]))
    (tmp_path / pyfunc.KERAS_FILE).write_bytes(model_to_bytes(model))
    columns = pyfunc.Columns(feature_cols=["review"], input_shapes=[()], output_cols=["p"],
                             scalar_outputs=[True], batch_size=512, input_dtypes=["string"])
    (tmp_path / pyfunc.COLUMNS_FILE).write_text(json.dumps(asdict(columns)))
    (tmp_path / pyfunc.CUSTOM_OBJECTS_FILE).write_bytes(cloudpickle.dumps({}))
    served = pyfunc._load_pyfunc(str(tmp_path))
    rows = pd.DataFrame({"review": ["good", "bad", "other"]})
    # one-hot columns: out-of-vocabulary, bad, good; the weights sum the known words
    assert served.predict(rows)["p"].tolist() == [1.0, 1.0, 0.0]
