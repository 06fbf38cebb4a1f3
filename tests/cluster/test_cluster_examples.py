"""A real Keras example, spark-submitted to a standalone master with two 1-core workers: the
Horovod ranks run in the two executors and the store is a directory they all reach."""
from __future__ import annotations

import re
import time

import pytest

pytestmark = pytest.mark.cluster

EPOCHS = 8


def test_tabular_regression_example_trains_on_the_cluster(standalone_cluster, tmp_path):
    store = tmp_path / "store"
    result = standalone_cluster.submit(
        "examples/tabular_regression.py", "--num-proc", "2", "--epochs", str(EPOCHS),
        "--store", str(store), timeout=300)
    out = result.stdout

    epochs = re.findall(r"^Epoch (\d+)/(\d+) - loss: ", out, re.M)
    assert epochs == [(str(i), str(EPOCHS)) for i in range(1, EPOCHS + 1)], out
    rmse = float(re.search(r"^held-out rmse: (\d+\.\d+)", out, re.M).group(1))
    baseline = float(re.search(r"^baseline rmse: (\d+\.\d+)", out, re.M).group(1))
    assert rmse < 0.85 * baseline, out
    assert "reloaded it and got the same predictions" in out, out
    assert (store / "models" / "tabular" / "stages").is_dir()
    # it ran as an application of the cluster's master, not in a local master of the driver
    assert "sparkdl-tabular-regression" in _completed_apps(standalone_cluster)


def _completed_apps(cluster, wait_s: float = 10.0) -> list[str]:
    """Names of the master's completed applications (an app's end reaches the master async)."""
    deadline = time.monotonic() + wait_s
    while True:
        apps = [app["name"] for app in cluster.status().get("completedapps", [])]
        if "sparkdl-tabular-regression" in apps or time.monotonic() > deadline:
            return apps
        time.sleep(0.5)
