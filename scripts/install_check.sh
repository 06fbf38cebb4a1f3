#!/usr/bin/env bash
# `make test-install`: install sparkdl as the README's cluster init script does, into a fresh venv
# that already holds an ML runtime's own pyspark/TensorFlow pair (not the pinned one), then run
# the Spark 3.5 smoke subset there with that runtime's packages untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV_INSTALL:-.venv-install}
PYTHON=${PYTHON:-python3.11}
RUNTIME=${RUNTIME:-"pyspark==3.5.9 tensorflow-cpu==2.17.1 pyarrow==14.0.2 numpy==1.26.4 pandas==2.2.3"}
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
PY="$(realpath "$VENV")/bin/python"
"$PY" -m pip install -q --upgrade pip 'setuptools<70' wheel
echo "install check: the runtime: $RUNTIME"
# shellcheck disable=SC2086
"$PY" -m pip install -q $RUNTIME cloudpickle psutil pyyaml fsspec h5py scikit-learn pytest
"$PY" -m pip freeze | sort > "$VENV/runtime-before.txt"

echo "install check: the init script (README, 'Horovod on TensorFlow 2.16-2.21')"
PYTHON=$PY bash scripts/build_horovod.sh
"$PY" -m pip wheel -q --no-deps . -w "$VENV/dist"
"$PY" -m pip install -q --no-deps "$VENV"/dist/sparkdl-*.whl
"$PY" -m pip install -q petastorm==0.13.1

"$PY" -m pip freeze | sort > "$VENV/runtime-after.txt"
for pkg in pyspark tensorflow-cpu pyarrow numpy pandas; do
  if [ "$(grep -i "^$pkg==" "$VENV/runtime-before.txt")" != "$(grep -i "^$pkg==" "$VENV/runtime-after.txt")" ]; then
    echo "install check: FAILED: installing sparkdl changed the runtime's $pkg" >&2
    diff "$VENV/runtime-before.txt" "$VENV/runtime-after.txt" >&2 || true
    exit 1
  fi
done
# from tests/, so that sparkdl is the installed wheel, not this checkout, here and on executors
cd tests
"$PY" -c "import pyspark, tensorflow as tf, keras, horovod.tensorflow, sparkdl
assert 'site-packages' in sparkdl.__file__, sparkdl.__file__
print('install check: pyspark', pyspark.__version__, '| TensorFlow', tf.__version__,
      '| Keras', keras.__version__, '| sparkdl from', sparkdl.__file__)"
PYSPARK_PYTHON=$PY PYSPARK_DRIVER_PYTHON=$PY "$PY" -m pytest -p no:cacheprovider -q "$@"
