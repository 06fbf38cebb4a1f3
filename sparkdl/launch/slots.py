"""Driver side: how many ranks the cluster can run at once (CPU and GPU task slots), and whether
its GPU settings let each rank have its own GPU."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

_CLUSTER_SLOT_WAIT_S = 30.0  # executors of a just-started cluster may still be registering
_SLOTS_STABLE_S = 5.0  # ...but once their count holds this long, no more are coming
_TASK_GPUS = "spark.task.resource.gpu.amount"
_EXECUTOR_GPUS = "spark.executor.resource.gpu.amount"


@dataclass(frozen=True)
class Executor:
    """What one executor offers tasks: its cores and how many GPUs it holds."""

    cores: int
    gpus: int


@dataclass(frozen=True)
class Slots:
    """Tasks the cluster runs at once by cores and, when tasks get GPUs, by GPUs."""

    cpu: int
    gpu: int | None  # None: Spark gives tasks no GPUs

    @property
    def ranks(self) -> int:
        return self.cpu if self.gpu is None else min(self.cpu, self.gpu)

    def describe(self) -> str:
        cpu = f"{self.cpu} CPU task slots (executor cores / spark.task.cpus)"
        if self.gpu is None:
            return cpu
        return f"{cpu} and {self.gpu} GPU slots (executor GPUs / {_TASK_GPUS})"


def count_slots(executors: list[Executor], task_cpus: int, task_gpus: float) -> Slots:
    """Per executor, cores // task_cpus tasks and, with task GPUs, as many as its GPUs hold
    (a fractional amount shares a GPU among floor(1/amount) tasks, as Spark counts them),
    summed over executors."""
    cpu = sum(e.cores // task_cpus for e in executors)
    if not task_gpus:
        return Slots(cpu, None)
    if task_gpus < 1:
        return Slots(cpu, sum(e.gpus * math.floor(1.0 / task_gpus) for e in executors))
    return Slots(cpu, sum(int(e.gpus // task_gpus) for e in executors))


def cluster_slots(session: Any) -> Slots | None:
    """The slots of the session's live executors; None when it cannot know them (a Spark
    Connect session whose configuration does not size the cluster)."""
    found = session.executors()
    if found is None:
        return None
    return count_slots(found, int(session.conf("spark.task.cpus", "1")),
                       float(session.conf(_TASK_GPUS, "0")))


def available_slots(session: Any, wanted: int | None, start_timeout: float = 120.0
                    ) -> Slots | None:
    """The cluster's slots; on a non-local classic session, waits a bounded time for executors
    still registering."""
    slots = cluster_slots(session)
    if session.connect or session.master.startswith("local"):
        return slots
    deadline = time.monotonic() + min(_CLUSTER_SLOT_WAIT_S, start_timeout)
    stable_since = time.monotonic()
    while slots.ranks < (wanted or 1) and time.monotonic() < deadline:
        if slots.ranks > 0 and time.monotonic() - stable_since > _SLOTS_STABLE_S:
            break  # executors stopped arriving: this is the cluster's size
        time.sleep(0.5)
        now = cluster_slots(session)
        if now != slots:
            slots, stable_since = now, time.monotonic()
    return slots


def wait_for_slots(session: Any, wanted: int, timeout: float) -> Slots | None:
    """The cluster's slots, waiting up to `timeout` seconds for `wanted` of them: after a lost
    executor, until the cluster manager's replacement has registered (classic sessions; Spark
    Connect cannot watch executors, so its relaunch waits within the launch's start_timeout)."""
    deadline = time.monotonic() + timeout
    while ((slots := cluster_slots(session)) is not None and slots.ranks < wanted
           and time.monotonic() < deadline):
        time.sleep(0.5)
    return slots


def check_num_proc(num_proc: int | None, slots: Slots | None) -> int:
    """num_proc, defaulting to the slot count; an error naming the counts when it cannot run.
    Unknown slots (None) leave the check to the launch's start_timeout."""
    if num_proc is None and slots is None:
        raise ValueError(
            "num_proc is not set and this Spark Connect session does not tell how many tasks "
            "the cluster runs at once (neither a local master, spark.cores.max nor "
            "spark.executor.instances with spark.executor.cores is set); set num_proc")
    if num_proc is None and slots.ranks == 0:
        raise ValueError(f"num_proc is not set and the cluster has no task slots yet: "
                         f"{slots.describe()}; wait for executors to register, or set num_proc")
    if num_proc is None:
        num_proc = slots.ranks
    if isinstance(num_proc, bool) or not isinstance(num_proc, int) or num_proc < 1:
        raise ValueError(f"num_proc must be a positive integer; got {num_proc!r}")
    if slots is not None and num_proc > slots.ranks:
        raise ValueError(
            f"num_proc={num_proc} but the cluster can run only {slots.ranks} tasks at once: "
            f"{slots.describe()}; a barrier stage needs all its tasks running at once. "
            "Lower num_proc or add executors.")
    return num_proc


def check_gpus(session: Any, use_gpu: bool | None) -> None:
    """Fail before any job when ranks could not each have their own GPU: `use_gpu=True` without
    task GPUs, or executors with GPUs that Spark does not hand to tasks."""
    if use_gpu is False or session.conf(_TASK_GPUS) is not None:
        return
    if use_gpu:
        raise ValueError(
            f"use_gpu=True but Spark gives tasks no GPUs ({_TASK_GPUS} is not set); set "
            f"{_EXECUTOR_GPUS}, {_TASK_GPUS}=1 and a GPU discovery script "
            "(spark.executor.resource.gpu.discoveryScript or the workers'), or use_gpu=None to "
            "run on CPU")
    # the setting first: executors of a just-started cluster may not have registered yet
    gpus = float(session.conf(_EXECUTOR_GPUS, "0") or 0) or max(
        (e.gpus for e in session.executors() or []), default=0)
    if gpus:
        raise ValueError(
            f"the executors have GPUs ({gpus:g} each) but {_TASK_GPUS} is not set, "
            "so Spark assigns them to no task and every rank would use the same ones; set "
            f"{_TASK_GPUS}=1 (one GPU per rank), or use_gpu=False to run on CPU")
