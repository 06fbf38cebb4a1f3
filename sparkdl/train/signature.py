"""Per-row input and output shapes of a Keras 3 model: Sequential, functional or subclassed.

Functional models carry their input tensors; a subclassed model knows its input shapes once
built (`model.build(shape)` or one call), and its outputs come from a symbolic call.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras

NOT_BUILT = ("model is not built; give it an Input layer, or call model.build(input_shape) "
             "(or the model on one batch) so its input shapes are known")


@dataclass(frozen=True)
class ModelSignature:
    """Per-row shapes (no batch dimension; None where free) and names of the inputs/outputs, and
    the inputs' dtypes ("string" for text; a subclassed model's are the float default)."""

    input_shapes: list[tuple]
    input_names: list[str]
    output_shapes: list[tuple]
    input_dtypes: list[str]

    def takes_strings(self, i: int) -> bool:
        """Whether input `i` is a string input (a `keras.Input(dtype="string")`)."""
        return self.input_dtypes[i] == "string"


def model_signature(model: keras.Model) -> ModelSignature:
    """The model's inputs and outputs, or ValueError(NOT_BUILT) when they are not known yet."""
    inputs = getattr(model, "inputs", None)
    if inputs:
        outputs = model.outputs
        names = [t.name for t in inputs]
    else:
        shapes = _built_input_shapes(model)
        inputs = [keras.KerasTensor((None, *s[1:])) for s in shapes]
        outputs = model(inputs[0] if len(inputs) == 1 else inputs)
        names = [f"input_{i}" for i in range(len(inputs))]
    outputs = keras.tree.flatten(outputs)
    return ModelSignature(input_shapes=[tuple(t.shape[1:]) for t in inputs], input_names=names,
                          output_shapes=[tuple(t.shape[1:]) for t in outputs],
                          input_dtypes=[str(t.dtype) for t in inputs])


def _built_input_shapes(model: keras.Model) -> list[tuple]:
    config = model.get_build_config() if model.built else None
    shape = (config or {}).get("input_shape")
    if shape is None:
        raise ValueError(NOT_BUILT)
    if isinstance(shape, dict):
        shape = list(shape.values())
    if shape and isinstance(shape[0], (list, tuple)):  # several inputs
        return [tuple(s) for s in shape]
    return [tuple(shape)]
