"""Writes mlp-<backend>.keras and its predictions on 16 inputs (mlp-<backend>.npz) on the Keras
backend this runs on: `KERAS_BACKEND=torch python save_on_backend.py`. A test loads the file
saved on the other backend and checks that transform predicts the same."""
from __future__ import annotations

import pathlib

import keras
import numpy as np

here = pathlib.Path(__file__).parent
backend = keras.backend.backend()
keras.utils.set_random_seed(7)
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.LayerNormalization(), keras.layers.Dense(2)])
x = np.random.default_rng(7).normal(size=(16, 3)).astype("float32")
model.save(here / f"mlp-{backend}.keras")
np.savez(here / f"mlp-{backend}.npz", x=x, p=np.asarray(model.predict(x, verbose=0)))
