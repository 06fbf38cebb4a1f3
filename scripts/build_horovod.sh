#!/usr/bin/env bash
# Build and install horovod 0.28.1 (Gloo + TensorFlow ops, no MPI) against the TensorFlow already
# installed in the target Python. horovod's last sdist does not build against TF >= 2.19 as
# shipped, so this leaves its XLA ops out; the wheel is cached per (horovod, TF, Python) so a
# second environment with the same versions installs in seconds.
#
# Usage: PYTHON=/path/to/python bash build_horovod.sh      (default: python3 on PATH)
#   SPARKDL_HOROVOD_CACHE   wheel cache folder (default ~/.cache/sparkdl/horovod)
# Works in any environment with TensorFlow, cmake and g++ (e.g. a cluster init script).
set -euo pipefail
PYTHON=${PYTHON:-python3}
HOROVOD_VERSION=0.28.1
CACHE=${SPARKDL_HOROVOD_CACHE:-$HOME/.cache/sparkdl/horovod}

read -r TF_VERSION PY_TAG TF_INCLUDE < <("$PYTHON" - <<'EOF'
import sys, tensorflow as tf
print(tf.__version__, f"cp{sys.version_info[0]}{sys.version_info[1]}", tf.sysconfig.get_include())
EOF
)
KEY="horovod-$HOROVOD_VERSION-tf$TF_VERSION-$PY_TAG"
mkdir -p "$CACHE/$KEY"
wheel=$(ls "$CACHE/$KEY"/horovod-*.whl 2>/dev/null | head -n1 || true)

if [ -z "$wheel" ]; then
  echo "build_horovod: building $KEY (a few minutes on 2 cores)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$PYTHON" -m pip download -q --no-deps --no-binary :all: "horovod==$HOROVOD_VERSION" -d "$work"
  tar -xzf "$work/horovod-$HOROVOD_VERSION.tar.gz" -C "$work"
  src="$work/horovod-$HOROVOD_VERSION"
  # Leave out Horovod's XLA ops (collectives inside XLA-compiled GPU graphs, opt-in through
  # HOROVOD_ENABLE_XLA_OPS; sparkdl compiles no train step with XLA): their source does not
  # build against TF >= 2.19 as shipped (moved headers, and `tensorflow` wheels' XLA headers
  # include LLVM headers that the wheel does not ship).
  sed -i '/xla_mpi_ops.cc/d' "$src/horovod/tensorflow/CMakeLists.txt"
  # TF's headers include highwayhash and farmhash from its bundled externals.
  export CXXFLAGS="${CXXFLAGS:-} -I$TF_INCLUDE/external/highwayhash -I$TF_INCLUDE/external/farmhash_archive/src"
  start=$(date +%s)
  HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
  HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS="-j$(nproc)" \
    "$PYTHON" -m pip wheel -q --no-build-isolation --no-deps "$src" -w "$work/wheel"
  echo "build_horovod: built $KEY in $(( $(date +%s) - start )) s"
  cp "$work"/wheel/horovod-*.whl "$CACHE/$KEY/"
  wheel=$(ls "$CACHE/$KEY"/horovod-*.whl | head -n1)
fi

"$PYTHON" -m pip install -q --no-deps --force-reinstall "$wheel"
"$PYTHON" -c "import horovod.tensorflow as hvd; assert hvd.gloo_built(), 'horovod built without Gloo'"
echo "build_horovod: installed $KEY"
