"""Executor side of GPU use: which of its task's Spark-scheduled GPUs a rank or an inference
worker uses. Needs no SparkSession and does not import TensorFlow."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

GROWTH_ENV = "TF_FORCE_GPU_ALLOW_GROWTH"
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"


def task_gpus(ctx: Any) -> list[str]:
    """The GPU addresses Spark assigned to the running task (`TaskContext`); [] when none."""
    gpus = ctx.resources().get("gpu") if ctx is not None else None
    return list(gpus.addresses) if gpus is not None else []


def rank_env(addresses: Sequence[str], use_gpu: bool | None) -> dict[str, str]:
    """Environment for a rank: exactly its task's GPUs (TensorFlow numbers them /GPU:0..), none
    when `use_gpu` is False; memory growth on, so ranks sharing a host never take all memory."""
    env = {GROWTH_ENV: "true"}
    if use_gpu is False:
        env[VISIBLE_ENV] = ""
    elif addresses:
        env[VISIBLE_ENV] = ",".join(addresses)
    return env


def inference_device(addresses: Sequence[str], use_gpu: bool | None, gpu_count: int,
                     visible: str | None = None) -> str | None:
    """The TensorFlow device for a task's inference: its first Spark-assigned GPU when this
    process sees it, else the CPU; None (TensorFlow's default placement) when Spark assigned
    no GPU. `visible` is the process's CUDA_VISIBLE_DEVICES, which renumbers the GPUs."""
    if use_gpu is False:
        return "/CPU:0"
    if not addresses:
        return None
    order = visible.split(",") if visible else None
    if order is not None:
        ordinal = order.index(addresses[0]) if addresses[0] in order else gpu_count
    else:
        ordinal = int(addresses[0]) if addresses[0].isdigit() else gpu_count
    return f"/GPU:{ordinal}" if ordinal < gpu_count else "/CPU:0"
