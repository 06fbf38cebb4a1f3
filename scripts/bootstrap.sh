#!/usr/bin/env bash
# Create .venv with the pinned stack (idempotent): system tools, Python packages, the Horovod
# build with Gloo + TensorFlow ops, then sparkdl itself in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
STAMP="$VENV/.sparkdl-stamp"
want=$(cat constraints.txt setup.cfg scripts/bootstrap.sh scripts/build_horovod.sh | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v "$PYTHON" >/dev/null 2>&1 || missing+=(python3 python3-venv python3-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip 'setuptools<70' wheel
echo "bootstrap: installing the pinned stack (constraints.txt)"
$PIP install -q --no-compile -c constraints.txt tensorflow-cpu keras tensorboard pyspark pyarrow \
  numpy pandas pyyaml cloudpickle psutil fsspec h5py
bash scripts/compile_site_packages.sh "$VENV/bin/python"
if ! "$VENV/bin/python" -c "import horovod.tensorflow" >/dev/null 2>&1; then
  PYTHON="$VENV/bin/python" bash scripts/build_horovod.sh
fi
$PIP install -q --no-compile -c constraints.txt -e '.[test,notebook]'
bash scripts/compile_site_packages.sh "$VENV/bin/python"
"$VENV/bin/python" -c "import horovod.tensorflow as hvd, pyspark; print('bootstrap: stack ok')"
echo "$want" > "$STAMP"
