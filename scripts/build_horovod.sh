#!/usr/bin/env bash
# Build and install horovod 0.28.1 (Gloo, no MPI) with ops for the frameworks installed in the
# target Python: TensorFlow, PyTorch, or both. horovod's last sdist builds against neither as
# shipped: for TF >= 2.19 this leaves its XLA ops out, and for torch 2.x it compiles as C++17
# (the sdist says C++14; torch's headers need 17). The wheel is cached per (horovod,
# frameworks and their versions, Python), so a second environment installs in seconds.
#
# Usage: PYTHON=/path/to/python bash build_horovod.sh      (default: python3 on PATH)
#   SPARKDL_HOROVOD_CACHE   wheel cache folder (default ~/.cache/sparkdl/horovod)
# Works in any environment with TensorFlow or PyTorch, cmake and g++ (a cluster init script).
set -euo pipefail
PYTHON=${PYTHON:-python3}
HOROVOD_VERSION=0.28.1
CACHE=${SPARKDL_HOROVOD_CACHE:-$HOME/.cache/sparkdl/horovod}

# The frameworks are found by their installed metadata (importing TensorFlow takes seconds).
read -r PY_TAG TF_VERSION TORCH_VERSION < <("$PYTHON" - <<'EOF'
import sys
from importlib import metadata

def version(*names):
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return "-"

print(f"cp{sys.version_info[0]}{sys.version_info[1]}",
      version("tensorflow", "tensorflow-cpu"), version("torch"))
EOF
)
if [ "$TF_VERSION" = - ] && [ "$TORCH_VERSION" = - ]; then
  echo "build_horovod: $PYTHON has neither TensorFlow nor PyTorch; expected one of them" >&2
  exit 2
fi
KEY="horovod-$HOROVOD_VERSION"
[ "$TF_VERSION" != - ] && KEY="$KEY-tf$TF_VERSION"
[ "$TORCH_VERSION" != - ] && KEY="$KEY-torch$TORCH_VERSION"
KEY="$KEY-$PY_TAG"
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
  frameworks=(HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1)
  if [ "$TF_VERSION" != - ]; then
    sed -i '/xla_mpi_ops.cc/d' "$src/horovod/tensorflow/CMakeLists.txt"
    # TF's headers include highwayhash and farmhash from its bundled externals.
    TF_INCLUDE=$("$PYTHON" -c "import tensorflow as tf; print(tf.sysconfig.get_include())")
    export CXXFLAGS="${CXXFLAGS:-} -I$TF_INCLUDE/external/highwayhash -I$TF_INCLUDE/external/farmhash_archive/src"
    frameworks[0]=HOROVOD_WITH_TENSORFLOW=1
  fi
  if [ "$TORCH_VERSION" != - ]; then
    sed -i 's/CMAKE_CXX_STANDARD 14/CMAKE_CXX_STANDARD 17/' \
      "$src/CMakeLists.txt" "$src/horovod/torch/CMakeLists.txt"
    frameworks[1]=HOROVOD_WITH_PYTORCH=1
  fi
  start=$(date +%s)
  env "${frameworks[@]}" HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_MXNET=1 \
    MAKEFLAGS="-j$(nproc)" \
    "$PYTHON" -m pip wheel -q --no-build-isolation --no-deps "$src" -w "$work/wheel"
  echo "build_horovod: built $KEY in $(( $(date +%s) - start )) s"
  cp "$work"/wheel/horovod-*.whl "$CACHE/$KEY/"
  wheel=$(ls "$CACHE/$KEY"/horovod-*.whl | head -n1)
fi

"$PYTHON" -m pip install -q --no-deps --force-reinstall "$wheel"
for ops in $([ "$TF_VERSION" != - ] && echo tensorflow) $([ "$TORCH_VERSION" != - ] && echo torch); do
  "$PYTHON" -c "import horovod.$ops as hvd; assert hvd.gloo_built(), 'horovod built without Gloo'"
done
echo "build_horovod: installed $KEY"
