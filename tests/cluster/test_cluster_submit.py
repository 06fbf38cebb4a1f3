"""spark-submit against a real standalone master: Horovod ranks on two executors. (The slot check
on a cluster is in test_cluster_gpus.py, which counts CPU and GPU slots.)"""
from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.cluster

SMOKE = "examples/cluster_smoke.py"


def test_allreduce_across_two_executors(standalone_cluster):
    result = standalone_cluster.submit(SMOKE, "--num-proc", "2", timeout=120)
    assert "allreduce_sum=3.0" in result.stdout.splitlines(), result.stdout
    # it ran as an application of this cluster's master, not in a local master of the driver
    apps = _completed_apps(standalone_cluster)
    assert "sparkdl-cluster-smoke" in apps, apps


def _completed_apps(cluster, wait_s: float = 10.0) -> list[str]:
    """Names of the master's completed applications; an app's end reaches the master async."""
    deadline = time.monotonic() + wait_s
    while True:
        apps = [app["name"] for app in cluster.status().get("completedapps", [])]
        if apps or time.monotonic() > deadline:
            return apps
        time.sleep(0.5)
