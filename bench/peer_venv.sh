#!/usr/bin/env bash
# Create .venv-peer for horovod.spark.keras.KerasEstimator, the benchmark peer (idempotent).
# Same pins as constraints.txt except: tensorflow-cpu 2.15.1 (horovod.spark.keras is Keras-2
# only) and pyarrow==10.0.1 (horovod's data preparation fails on pyarrow >= 11: 'Schema' object
# has no attribute 'to_arrow_schema'). Horovod is built by scripts/build_horovod.sh (cached).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PEER_VENV:-.venv-peer}
PYTHON=${PYTHON:-python3.11}
STAMP="$VENV/.peer-stamp"
want=$(cat constraints.txt bench/peer_venv.sh scripts/build_horovod.sh | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
pins=$(mktemp)
trap 'rm -f "$pins"' EXIT
sed -e 's/^pyarrow==.*/pyarrow==10.0.1/' -e 's/^tensorflow-cpu==.*/tensorflow-cpu==2.15.1/' \
    -e '/^keras==/d' -e '/^tensorboard==/d' constraints.txt > "$pins"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip 'setuptools<70' wheel
echo "peer_venv: installing the pinned stack with pyarrow 10.0.1 into $VENV"
$PIP install -q -c "$pins" tensorflow-cpu pyspark petastorm pyarrow numpy pandas \
  pyyaml cloudpickle psutil h5py fsspec
if ! "$VENV/bin/python" -c "import horovod.spark.keras" >/dev/null 2>&1; then
  PYTHON="$VENV/bin/python" bash scripts/build_horovod.sh
fi
"$VENV/bin/python" -c "import horovod.spark.keras, pyarrow; print('peer_venv: ok, pyarrow', pyarrow.__version__)"
echo "$want" > "$STAMP"
