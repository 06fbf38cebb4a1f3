"""Entry point of a rank's child process: `python -m sparkdl.launch.child PAYLOAD RESULT`.

Runs the user's function in a fresh interpreter, so TensorFlow state, memory and crashes stay out
of the Spark worker. The return value is cloudpickled to RESULT; a traceback goes to stderr.
"""
from __future__ import annotations

import os
import sys

import cloudpickle


def main(payload_path: str, result_path: str) -> None:
    with open(payload_path, "rb") as f:
        fn, args, kwargs = cloudpickle.load(f)
    result = fn(*args, **kwargs)
    with open(result_path + ".tmp", "wb") as f:
        cloudpickle.dump(result, f)
    os.replace(result_path + ".tmp", result_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    sys.stdout.flush()
    sys.stderr.flush()
    # The result is safely on disk: skip interpreter teardown (TensorFlow and Horovod take
    # about 0.6 s to unwind), which no caller waits for.
    os._exit(0)
