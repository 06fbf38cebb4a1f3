#!/usr/bin/env bash
# `make test-runtime PROFILE=<name>`: a fresh venv holding one runtime's own packages
# (scripts/runtimes/<name>.env), sparkdl installed into it as the README's cluster init script
# does (Horovod built against the runtime's TensorFlow, then the sparkdl wheel with its
# dependencies), a check that the runtime's packages are unchanged and that no second TensorFlow
# distribution came in, then the smoke subset (fit, transform, save, load) run there, with the
# profile's SMOKE_EXTRA tests, or the profile's own SMOKE_TESTS (they replace the node ids given).
# A profile's TEST_PACKAGES (what its tests need beyond pytest) are installed with the runtime's
# own, before the check; they must not bring TensorFlow into a runtime without it.
#
# Usage: bash scripts/runtime_check.sh PROFILE [pytest node ids...]
#   VENV_RUNTIME  the venv (default .venv-runtime-PROFILE)   PYTHON  its interpreter (python3.11)
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:?usage: runtime_check.sh PROFILE [tests...]; profiles: $(ls scripts/runtimes | sed 's/\.env$//' | tr '\n' ' ')}
shift
ENV_FILE="scripts/runtimes/$PROFILE.env"
[ -f "$ENV_FILE" ] || { echo "runtime check: no profile '$PROFILE'; expected one of: $(ls scripts/runtimes | sed 's/\.env$//' | tr '\n' ' ')" >&2; exit 2; }
# shellcheck source=/dev/null
source "$ENV_FILE"
VENV=${VENV_RUNTIME:-.venv-runtime-$PROFILE}
PYTHON=${PYTHON:-python3.11}
start=$(date +%s)

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
PY="$(realpath "$VENV")/bin/python"
"$PY" -m pip install -q --upgrade pip 'setuptools<70' wheel
echo "runtime check [$PROFILE]: the runtime: $RUNTIME"
set -f  # TEST_PACKAGES' extras (pyspark[connect]) are not file patterns
# shellcheck disable=SC2086
"$PY" -m pip install -q --no-compile $RUNTIME cloudpickle psutil pyyaml fsspec h5py scikit-learn \
  pytest ${TEST_PACKAGES:-}
set +f
installed=$("$PY" -m pip freeze)
if ! grep -qi tensorflow <<< "$RUNTIME" && grep -qiE '^(tensorflow|tf-nightly)' <<< "$installed"
then
  echo "runtime check [$PROFILE]: FAILED: the runtime has no TensorFlow; its packages added it" >&2
  exit 1
fi
bash scripts/compile_site_packages.sh "$PY"
"$PY" -m pip freeze | LC_ALL=C sort > "$VENV/runtime-before.txt"

echo "runtime check [$PROFILE]: the init script (README, 'Install on a cluster')"
PYTHON=$PY bash scripts/build_horovod.sh
"$PY" -m pip wheel -q --no-deps . -w "$VENV/dist"
"$PY" -m pip install -q --no-compile "$VENV"/dist/sparkdl-*.whl
bash scripts/compile_site_packages.sh "$PY" sparkdl
"$PY" -m pip freeze | LC_ALL=C sort > "$VENV/runtime-after.txt"

changed=$(LC_ALL=C comm -23 "$VENV/runtime-before.txt" "$VENV/runtime-after.txt")
added_tf=$(LC_ALL=C comm -13 <(cut -d= -f1 "$VENV/runtime-before.txt" | LC_ALL=C sort) <(cut -d= -f1 "$VENV/runtime-after.txt" | LC_ALL=C sort) \
           | grep -iE '^(tensorflow|tf-nightly|tf_nightly)' || true)
if [ -n "$changed" ] || [ -n "$added_tf" ]; then
  echo "runtime check [$PROFILE]: FAILED: installing sparkdl changed the runtime's packages" >&2
  diff "$VENV/runtime-before.txt" "$VENV/runtime-after.txt" >&2 || true
  exit 1
fi
# from tests/, so that sparkdl is the installed wheel, not this checkout, here and on executors
cd tests
"$PY" -c "import importlib, pyspark, pyarrow, numpy, pandas, keras, sparkdl
backend = keras.backend.backend()  # the profile's KERAS_BACKEND; Horovod must have its ops
framework = importlib.import_module(backend)
importlib.import_module('horovod.' + backend)
assert 'site-packages' in sparkdl.__file__, sparkdl.__file__
print('runtime check: pyspark', pyspark.__version__, '| pyarrow', pyarrow.__version__,
      '| numpy', numpy.__version__, '| pandas', pandas.__version__, '|', backend,
      framework.__version__, '| Keras', keras.__version__)"
set +e
# a profile's SMOKE_TESTS replaces the default subset; SMOKE_EXTRA adds to it; SMOKE_MARKERS
# selects by marker (pytest -m)
# shellcheck disable=SC2086
if [ -n "${SMOKE_TESTS:-}" ]; then set -- $SMOKE_TESTS; fi
if [ -n "${SMOKE_MARKERS:-}" ]; then set -- "$@" -m "$SMOKE_MARKERS"; fi
# shellcheck disable=SC2086
PYSPARK_PYTHON=$PY PYSPARK_DRIVER_PYTHON=$PY "$PY" -m pytest -p no:cacheprovider -q "$@" ${SMOKE_EXTRA:-}
rc=$?
set -e
echo "runtime check [$PROFILE]: $([ $rc = 0 ] && echo passed || echo FAILED) in $(( $(date +%s) - start )) s"
exit $rc
