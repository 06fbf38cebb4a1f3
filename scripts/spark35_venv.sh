#!/usr/bin/env bash
# A second venv for the Spark 3.5 smoke subset (`make test` runs it): pyspark 3.5 and its py4j in
# their own site-packages, in front of .venv's (TensorFlow, Horovod, sparkdl...: the rest of the
# stack the same, nothing installed twice). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${VENV:-.venv}
VENV35=${VENV35:-.venv-spark35}
PYSPARK35=${PYSPARK35:-3.5.9}
PY4J35=${PY4J35:-0.10.9.7}  # the py4j that pyspark 3.5 ships its gateway jar for
STAMP="$VENV35/.sparkdl-stamp"
want="pyspark==$PYSPARK35 py4j==$PY4J35 over $(realpath "$BASE")"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
purelib() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
rm -rf "$VENV35"
base_python=$("$BASE/bin/python" -c "import sys; print(sys._base_executable)")
"$base_python" -m venv "$VENV35"
# a .pth line runs at start-up: .venv's site-packages (and its .pth files) come after our own
echo "import site; site.addsitedir('$(realpath "$(purelib "$BASE")")')" \
  > "$(purelib "$VENV35")/sparkdl-base.pth"
echo "bootstrap: pyspark $PYSPARK35 into $VENV35"
"$VENV35/bin/python" -m pip install -q --no-deps "pyspark==$PYSPARK35" "py4j==$PY4J35"
"$VENV35/bin/python" -c "import pyspark, sparkdl, horovod.tensorflow; print('spark 3.5 venv: pyspark', pyspark.__version__)"
echo "$want" > "$STAMP"
