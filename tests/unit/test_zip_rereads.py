"""A reused Spark Python worker invalidates import caches before every task; sparkdl's patch
keeps that from re-reading zips on sys.path that did not change."""
from __future__ import annotations

import subprocess
import sys

_SCRIPT = """
import importlib, os, sys, zipfile, zipimport
from sparkdl.train.predict import reread_only_changed_zips

archive = os.path.join(sys.argv[1], "lib.zip")
with zipfile.ZipFile(archive, "w") as z:
    z.writestr("first.py", "VALUE = 1")
sys.path.insert(0, archive)
import first

reads = []
read_directory = zipimport._read_directory
zipimport._read_directory = lambda path: reads.append(path) or read_directory(path)
reread_only_changed_zips()
for _ in range(3):  # three tasks
    importlib.invalidate_caches()
unchanged = reads.count(archive)
with zipfile.ZipFile(archive, "a") as z:
    z.writestr("second.py", "VALUE = 2")
importlib.invalidate_caches()
import second
print(unchanged, reads.count(archive) - unchanged, first.VALUE, second.VALUE)
"""


def test_unchanged_zips_are_not_reread_and_changed_ones_are(tmp_path):
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    unchanged, after_change, first, second = map(int, out.stdout.split())
    assert unchanged <= 1  # Python 3.11 alone: once per task and importer (3 here)
    assert after_change == 1
    assert (first, second) == (1, 2)
