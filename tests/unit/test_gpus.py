"""GPU pieces that need no Spark: slot counts by cores and GPUs, a rank's GPU environment, the
inference device of a task."""
from __future__ import annotations

import pytest

from sparkdl.launch.gpus import inference_device, rank_env
from sparkdl.launch.slots import Executor, Slots, check_gpus, check_num_proc, count_slots


def test_ranks_at_once_are_the_fewer_of_cpu_and_gpu_slots():
    two_gpu_hosts = [Executor(cores=8, gpus=1), Executor(cores=8, gpus=1)]
    assert count_slots(two_gpu_hosts, task_cpus=1, task_gpus=1) == Slots(cpu=16, gpu=2)
    assert count_slots(two_gpu_hosts, task_cpus=1, task_gpus=1).ranks == 2
    assert count_slots(two_gpu_hosts, task_cpus=4, task_gpus=0.5).ranks == 4  # 2 tasks a GPU
    assert count_slots([Executor(4, 4)], task_cpus=1, task_gpus=2).ranks == 2
    assert count_slots([Executor(8, 1)], task_cpus=1, task_gpus=0.35).ranks == 2  # Spark: floor
    assert count_slots(two_gpu_hosts, task_cpus=1, task_gpus=0) == Slots(cpu=16, gpu=None)
    assert count_slots(two_gpu_hosts, task_cpus=1, task_gpus=0).ranks == 16


def test_num_proc_above_the_gpu_slots_fails_naming_both_counts():
    with pytest.raises(ValueError, match=r"num_proc=3 but the cluster can run only 2 tasks at "
                                         r"once: 16 CPU task slots \(executor cores / "
                                         r"spark.task.cpus\) and 2 GPU slots \(executor GPUs / "
                                         r"spark.task.resource.gpu.amount\)"):
        check_num_proc(3, Slots(cpu=16, gpu=2))
    assert check_num_proc(None, Slots(cpu=16, gpu=2)) == 2
    with pytest.raises(ValueError, match="num_proc is not set and the cluster has no task slots "
                                         "yet: 0 CPU task slots"):
        check_num_proc(None, Slots(cpu=0, gpu=None))  # no executor registered in time


class _Session:
    """A session's GPU settings and live executors, the only parts `check_gpus` reads."""

    def __init__(self, conf: dict[str, str], executors: list[Executor]) -> None:
        self._conf, self._executors = conf, executors

    def conf(self, key: str, default: str | None = None) -> str | None:
        return self._conf.get(key, default)

    def executors(self) -> list[Executor]:
        return self._executors


def test_executor_gpus_without_task_gpus_fail_before_the_executors_register():
    executor_gpus = {"spark.executor.resource.gpu.amount": "1"}
    for session in (_Session(executor_gpus, []), _Session({}, [Executor(4, 1)])):
        with pytest.raises(ValueError, match=r"the executors have GPUs \(1 each\) but "
                                             r"spark.task.resource.gpu.amount is not set"):
            check_gpus(session, None)
        check_gpus(session, False)  # CPU on purpose: fine
    check_gpus(_Session({}, [Executor(4, 0)]), None)


def test_a_rank_sees_exactly_its_tasks_gpus_with_memory_growth():
    assert rank_env(["3"], None) == {"CUDA_VISIBLE_DEVICES": "3",
                                     "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    assert rank_env(["0", "1"], True)["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert rank_env(["3"], False)["CUDA_VISIBLE_DEVICES"] == ""  # forced CPU: no GPU visible
    assert "CUDA_VISIBLE_DEVICES" not in rank_env([], None)  # Spark assigned none: as it is


def test_inference_runs_on_the_tasks_gpu_when_this_process_sees_it():
    assert inference_device(["1"], None, gpu_count=2) == "/GPU:1"
    # CUDA_VISIBLE_DEVICES renumbers: address 5 is the process's second GPU
    assert inference_device(["5"], None, gpu_count=2, visible="4,5") == "/GPU:1"
    assert inference_device(["1"], None, gpu_count=0) == "/CPU:0"  # not a device TF sees
    assert inference_device(["1"], False, gpu_count=2) == "/CPU:0"
    assert inference_device([], None, gpu_count=2) is None  # no assignment: TF's own placement
