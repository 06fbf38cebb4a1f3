"""Spark Connect in front of the standalone cluster: a client without a SparkContext fits a
Pipeline whose ranks run in the cluster's two executors, and transforms with it."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.cluster

# the server knows its slots from its configuration (a Connect client cannot list executors)
SERVER_CONF = {"spark.cores.max": "2", "spark.executor.cores": "1",
               "spark.executor.resource.gpu.amount": "1", "spark.task.resource.gpu.amount": "1"}


def test_pipeline_through_spark_connect_on_the_cluster(standalone_cluster, tmp_path):
    with standalone_cluster.connect_server(SERVER_CONF) as url:
        env = {k: v for k, v in standalone_cluster.env.items()
               if not k.startswith(("PYSPARK_GATEWAY", "SPARK_CONNECT_MODE"))}
        proc = subprocess.run(
            [sys.executable, "tests/cluster/connect_fit.py", "--remote", url,
             "--store", str(tmp_path / "store")],
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))), env=env,
            capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:] + standalone_cluster.executor_logs()
    result = json.loads(re.search(r"^RESULT (.*)$", proc.stdout, re.M).group(1))
    assert result["master"] == standalone_cluster.master_url  # the server's, not a local one
    # progress lines reached the client while the ranks trained in the executors
    assert re.findall(r"^Epoch (\d)/4 - loss", proc.stdout, re.M) == ["1", "2", "3", "4"], out
    assert result["epochs"] == [1, 2, 3, 4]
    assert result["accuracy"] > 0.9
    assert result["error"].startswith("num_proc=3 but the cluster can run only 2 tasks at once")
    assert result["error_s"] < 5
