"""sparkdl.run: real barrier stages in local[2], real Horovod over Gloo in child processes (the
ranks use Horovod's ops for the session's Keras backend)."""
from __future__ import annotations

import os
import time

import pytest

import sparkdl
from sparkdl.launch import LaunchError, RankFailedError


def _allreduce_rank() -> dict:
    import keras

    from sparkdl.train.backend import horovod

    hvd = horovod()
    hvd.init()
    total = hvd.allreduce(keras.ops.convert_to_tensor(float(hvd.rank() + 1)), op=hvd.Sum)
    return {"rank": hvd.rank(), "size": hvd.size(), "local_rank": hvd.local_rank(),
            "local_size": hvd.local_size(), "sum": float(total), "pid": os.getpid()}


def test_allreduce_sums_across_two_ranks_in_rank_order(spark):
    results = sparkdl.run(_allreduce_rank, num_proc=2)
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["size"] == 2 and r["sum"] == 3.0 for r in results)
    # both tasks run on this one host: local ranks are counted per host
    assert sorted(r["local_rank"] for r in results) == [0, 1]
    assert all(r["local_size"] == 2 for r in results)
    # each rank runs in its own child process, not in the Spark worker or the driver
    assert len({r["pid"] for r in results} | {os.getpid()}) == 3


def _echo(x, *, scale):
    from sparkdl.train.backend import horovod

    hvd = horovod()
    hvd.init()
    return (hvd.rank(), x * scale, os.environ.get("SPARKDL_TEST_VAR"))


def test_args_kwargs_and_env_reach_every_rank(spark):
    results = sparkdl.run(_echo, num_proc=2, args=(21,), kwargs={"scale": 2},
                          env={"SPARKDL_TEST_VAR": "hello"})
    assert results == [(0, 42, "hello"), (1, 42, "hello")]


def test_num_proc_defaults_to_task_slots(spark):
    results = sparkdl.run(_allreduce_rank)
    assert len(results) == spark.sparkContext.defaultParallelism == 2


def _fail_on_rank_one():
    import keras

    from sparkdl.train.backend import horovod

    hvd = horovod()
    hvd.init()
    if hvd.rank() == 1:
        raise ValueError("boom from the second rank")
    hvd.allreduce(keras.ops.convert_to_tensor(1.0))  # rank 0 waits on its peer, which is gone
    return "unreachable"


def test_failing_rank_raises_on_driver_with_its_message(spark):
    t0 = time.monotonic()
    with pytest.raises(RankFailedError) as info:
        sparkdl.run(_fail_on_rank_one, num_proc=2, start_timeout=60)
    assert time.monotonic() - t0 < 60
    assert info.value.rank == 1
    text = str(info.value)
    assert "rank 1" in text and "ValueError: boom from the second rank" in text
    # the session stays usable
    assert sparkdl.run(_allreduce_rank, num_proc=2)[0]["sum"] == 3.0


def _hard_exit():
    os._exit(3)


def test_rank_exiting_without_traceback_reports_exit_code(spark):
    with pytest.raises(RankFailedError, match=r"exited with code 3"):
        sparkdl.run(_hard_exit, num_proc=1)


def _beat_then_stall_on_rank_one():
    import threading

    rank = int(os.environ["HOROVOD_RANK"])
    started = time.monotonic()
    while time.monotonic() - started < 120:
        if rank == 1 and time.monotonic() - started > 2:
            print("rank 1 is about to block")
            threading.Event().wait()  # rank 1 blocks and stops beating
        sparkdl.launch.heartbeat()
        time.sleep(0.1)
    return "unreachable"


def test_rank_without_heartbeats_is_ended_after_stall_timeout(spark):
    started = time.monotonic()
    with pytest.raises(RankFailedError, match=r"rank 1 on \S+ stopped making progress") as info:
        sparkdl.run(_beat_then_stall_on_rank_one, num_proc=2, stall_timeout=8)
    assert time.monotonic() - started < 40
    assert info.value.rank == 1 and "rank 1 is about to block" in str(info.value)
    with pytest.raises(ValueError, match="stall_timeout 0 is invalid"):
        sparkdl.run(_allreduce_rank, num_proc=1, stall_timeout=0)


def test_num_proc_above_slots_fails_fast_naming_the_slots(session):
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"num_proc=3 but the cluster can run only 2 tasks at "
                                         r"once: 2 CPU task slots"):
        sparkdl.run(_allreduce_rank, num_proc=3)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_invalid_num_proc_is_rejected(spark, bad):
    with pytest.raises(ValueError, match="num_proc must be a positive integer"):
        sparkdl.run(_allreduce_rank, num_proc=bad)


def _report_progress():
    from sparkdl.launch import report

    for step in range(3):
        report({"step": step})
    return "done"


def test_messages_from_ranks_reach_the_driver_while_running(spark):
    seen = []
    results = sparkdl.run(_report_progress, num_proc=2,
                          on_message=lambda rank, msg: seen.append((rank, msg["step"])))
    assert results == ["done"] * 2
    assert sorted(seen) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


def test_run_without_spark_session_explains(monkeypatch):
    from pyspark import SparkContext

    monkeypatch.setattr(SparkContext, "_active_spark_context", None)
    with pytest.raises(LaunchError, match="needs an active SparkSession"):
        sparkdl.run(_allreduce_rank, num_proc=1)
