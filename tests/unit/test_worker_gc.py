"""Spark's daemon runs gc.collect() after every task of a reused Python worker; once transform
has loaded a model there, that collection must not scan the backend's heap (TensorFlow's or
torch's), and a model that a new fit replaces must still be freed."""
from __future__ import annotations

import subprocess
import sys

_SCRIPT = """
import gc, weakref
import keras
from sparkdl.launch.session import Inline
from sparkdl.train import predict
from sparkdl.train.serialize import model_to_bytes

def spec(key):
    return predict.PredictSpec(model_key=key, input_shapes=[(4,)], input_dtypes=["float32"],
                               scalar_outputs=[True], batch_size=512, use_gpu=False)

def model_bytes():
    return Inline(model_to_bytes(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])))

first = predict._load(spec("first"), model_bytes(), predict.cloudpickle.dumps({}))
frozen, scanned = gc.get_freeze_count(), len(gc.get_objects())
forward = getattr(first, "python_function", first)  # TensorFlow: a tf.function around it
model = next(c.cell_contents for c in forward.__closure__
             if isinstance(c.cell_contents, keras.Model))
alive = weakref.ref(model)
del first, forward, model
predict._load(spec("second"), model_bytes(), predict.cloudpickle.dumps({}))
print(frozen, scanned, alive() is None, len(predict._models))
"""


def test_a_loaded_model_is_kept_out_of_per_task_gc_and_a_replaced_one_is_freed():
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    frozen, scanned, freed, models = out.stdout.split()[-4:]
    assert int(frozen) > 100_000  # the backend (TensorFlow or torch), Keras and the model
    assert int(scanned) < int(frozen) // 20  # what the daemon's gc.collect() still walks
    assert freed == "True"  # the first fit's model, after a second fit's replaced it
    assert models == "1"
