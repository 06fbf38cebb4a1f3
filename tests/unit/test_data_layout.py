"""Worker-side imports stay light; materialize's file-count rule (no Spark session needed)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from sparkdl.data.materialize import MAX_FILE_BYTES, MIN_FILE_BYTES, num_files


def test_worker_side_modules_import_without_pyspark_sql_or_tensorflow():
    code = ("import sys, sparkdl.store, sparkdl.data, sparkdl.data.reader; "
            "print(sorted(m for m in sys.modules if m.startswith(('pyspark', 'tensorflow'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("rows, row_bytes, num_proc, parallelism, expected", [
    (1000, 100, 2, 8, 2),                                   # tiny: one file per process
    (10, 4 * MAX_FILE_BYTES, 2, 1, 40),                    # big: files of at most MAX
    (10, 4 * MAX_FILE_BYTES, 3, 1, 42),                    # ... in multiples of num_proc
    (100, MIN_FILE_BYTES, 2, 16, 16),                      # enough tasks for the cluster
    (8, MIN_FILE_BYTES, 2, 16, 8),                         # ... but files of at least MIN
])
def test_num_files(rows, row_bytes, num_proc, parallelism, expected):
    assert num_files(rows, row_bytes, num_proc, parallelism) == expected
