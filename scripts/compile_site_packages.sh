#!/usr/bin/env bash
# Byte-compile a Python's site-packages (or only the named packages in it) on every core, after
# `pip install --no-compile`: pip does it on one core (on 2 cores, 30 s more for the default
# stack), and nothing else writes them where PYTHONDONTWRITEBYTECODE is set. As pip does, files
# that are not Python 3 (test data) are skipped quietly.
# Usage: bash scripts/compile_site_packages.sh PYTHON [PACKAGE...]
set -uo pipefail
PY=${1:?usage: compile_site_packages.sh PYTHON [PACKAGE...]}
shift
site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ $# -eq 0 ]; then set -- "$site"; else set -- "${@/#/$site/}"; fi
"$PY" -m compileall -q -j 0 "$@" >/dev/null || true
