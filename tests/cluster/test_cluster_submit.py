"""spark-submit against a real standalone master: Horovod ranks on two executors, and the slot
check that fails fast when num_proc exceeds what the cluster has."""
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


def test_num_proc_over_the_slots_fails_fast_naming_them(standalone_cluster):
    t0 = time.monotonic()
    result = standalone_cluster.submit(SMOKE, "--num-proc", "3", timeout=90, check=False)
    elapsed = time.monotonic() - t0
    # spark-submit hands the Python driver's stderr (the traceback) to its own stdout
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert ("ValueError: num_proc=3 but the cluster can run only 2 tasks at once: 2 CPU task "
            "slots") in output, output[-3000:]
    assert elapsed < 60, f"took {elapsed:.0f}s to fail"
    assert "allreduce_sum" not in output


def _completed_apps(cluster, wait_s: float = 10.0) -> list[str]:
    """Names of the master's completed applications; an app's end reaches the master async."""
    deadline = time.monotonic() + wait_s
    while True:
        apps = [app["name"] for app in cluster.status().get("completedapps", [])]
        if apps or time.monotonic() > deadline:
            return apps
        time.sleep(0.5)
