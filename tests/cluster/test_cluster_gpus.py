"""GPUs scheduled by Spark on the standalone cluster, whose workers report fake GPU addresses
(worker 1: "0", worker 2: "1"): each rank sees exactly its task's GPU, slots count GPUs, Horovod's
allreduce (examples/cluster_smoke.py's) spans the two executors, and a missing task GPU setting
fails before any job."""
from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.cluster


def _worker_gpu(cwd: str) -> str:
    """The address the worker a process runs under offers (its executor dir names the worker)."""
    worker = re.search(r"/worker-(\d+)/", cwd)
    assert worker, cwd
    return str(int(worker.group(1)) - 1)


def test_each_rank_sees_its_tasks_gpu_and_slots_count_gpus(cluster_app):
    result = cluster_app.part("gpus")
    # sparkdl.run's ranks and a fit's ranks: one distinct GPU each, the one Spark assigned
    for ranks in (result["run"], result["fit"]):
        assert sorted(seen["gpus"] for seen in ranks) == ["0", "1"], ranks
        for seen in ranks:
            assert seen["gpus"] == _worker_gpu(seen["cwd"]), seen
            assert seen["growth"] == "true"
    assert [seen["gpus"] for seen in result["run_cpu"]] == ["", ""]  # use_gpu=False hides them
    assert result["too_many"].startswith(
        "num_proc=3 but the cluster can run only 2 tasks at once: 2 CPU task slots (executor "
        "cores / spark.task.cpus) and 2 GPU slots (executor GPUs / "
        "spark.task.resource.gpu.amount)"), result["too_many"]
    assert result["predicted"] == 400  # transform's tasks got GPUs too; TF sees none: CPU
    assert result["allreduce"] == [3.0, 3.0]  # ranks 0 and 1, one per executor, add 1 + 2


def test_executor_gpus_without_task_gpus_fail_naming_the_setting(standalone_cluster):
    result = standalone_cluster.submit("examples/cluster_smoke.py", "--num-proc", "2",
                                       timeout=90, check=False,
                                       conf={"spark.executor.resource.gpu.amount": "1"})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert ("ValueError: the executors have GPUs (1 each) but spark.task.resource.gpu.amount is "
            "not set") in output, output[-3000:]
    assert "allreduce_sum" not in output
