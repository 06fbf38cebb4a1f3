"""Ranks forked from a worker's zygote: own environment, output, random state and exit code;
a task waits for its rank's exit, not for the end of its output."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import cloudpickle
import grpc
import psutil
import pytest

import sparkdl.launch.zygote as zygote_module
from sparkdl.launch.gpus import GROWTH_ENV
from sparkdl.launch.task import TaskSpec, _workdir_prefix, run_child
from sparkdl.launch.zygote import PRELOAD_ENV, RANK_NAME, ZYGOTE_NAME, preload_key, zygote
from sparkdl.train.backend import BACKEND_ENV, rank_env


def _rank_body(tag):
    import random

    import psutil
    print(f"hello from {tag}")
    return (os.environ["RANK_TAG"], "xml.dom.minidom" in sys.modules, random.random(),
            psutil.Process().name())


def _fork(tmp_path, name, fn, *args, env=None, start_env=None):
    payload, result = tmp_path / f"{name}.pkl", tmp_path / f"{name}.out"
    payload.write_bytes(cloudpickle.dumps((fn, args, {})))
    start_env = start_env or {**os.environ, PRELOAD_ENV: "xml.dom.minidom"}
    return zygote(start_env).fork(str(payload), str(result), {**start_env, **(env or {})}), result


def _finish(proc):
    output = proc.stdout.read()
    return proc.wait(), output


def test_each_rank_gets_its_env_output_and_fresh_random_state_and_preloaded_modules(tmp_path):
    seen = []
    for rank in range(2):
        proc, result = _fork(tmp_path, f"r{rank}", _rank_body, rank, env={"RANK_TAG": str(rank)})
        assert _finish(proc) == (0, f"hello from {rank}\n")
        seen.append(cloudpickle.loads(result.read_bytes()))
    assert [s[0] for s in seen] == ["0", "1"]
    assert all(s[1] for s in seen)  # imported once in the zygote, not by the rank
    assert seen[0][2] != seen[1][2]  # forked ranks do not repeat each other's random numbers
    assert {s[3] for s in seen} == {RANK_NAME}  # what ps and psutil show


def _fail(message):
    raise RuntimeError(message)


def test_a_failure_caused_by_another_rank_prints_one_line_and_a_root_cause_its_traceback(
        tmp_path):
    """Rank 0's "Horovod has been shut down" after rank 1 failed filled the console with
    hundreds of lines of traceback above the cause."""
    secondary = "Horovod has been shut down. This was caused by an exception on one of the ranks"
    proc, _ = _fork(tmp_path, "secondary", _fail, secondary + "\n" + "  graph frame\n" * 300)
    code, output = _finish(proc)
    assert code == 1 and output.splitlines() == [
        f"RuntimeError: {secondary} (after another rank's failure: traceback left out)"]
    proc, _ = _fork(tmp_path, "root", _fail, "boom")
    code, output = _finish(proc)
    assert code == 1 and "Traceback (most recent call last)" in output
    assert output.rstrip().endswith("RuntimeError: boom")


def test_a_zygote_starts_beside_a_busy_grpc_client(tmp_path):
    """A Spark Connect client's gRPC threads in the starting process: forking with Popen's
    preexec_fn ran gRPC's fork handlers, which crashed the zygote before exec."""
    server = grpc.server(futures.ThreadPoolExecutor(2))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for _ in range(4)]
    try:
        for channel in channels:
            channel.subscribe(lambda state: None, try_to_connect=True)
        for attempt in range(3):
            start_env = {**os.environ, PRELOAD_ENV: "", "SPARKDL_TEST_ZYGOTE": f"grpc{attempt}"}
            proc, result = _fork(tmp_path, f"g{attempt}", abs, -attempt, start_env=start_env)
            assert _finish(proc) == (0, "")
            assert cloudpickle.loads(result.read_bytes()) == attempt
    finally:
        for channel in channels:
            channel.close()
        server.stop(None)


def test_a_killed_worker_takes_its_zygote_and_running_rank_with_it(tmp_path):
    payload = tmp_path / "sleep.pkl"
    payload.write_bytes(cloudpickle.dumps((time.sleep, (120,), {})))
    worker = subprocess.Popen(
        [sys.executable, "-c", "import os, time; from sparkdl.launch.zygote import zygote; "
         "z = zygote({**os.environ, 'SPARKDL_PRELOAD': ''}); "
         f"rank = z.fork({str(payload)!r}, {str(tmp_path / 'out')!r}, dict(os.environ)); "
         "print(z.proc.pid, rank.pid, flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        processes = [psutil.Process(int(pid)) for pid in worker.stdout.readline().split()]
        deadline = time.monotonic() + 30
        while [p.name() for p in processes] != [ZYGOTE_NAME, RANK_NAME]:  # the rank names itself
            assert time.monotonic() < deadline, "the rank did not start in 30 s"
            time.sleep(0.05)
    finally:
        worker.kill()
        worker.wait()
    assert psutil.wait_procs(processes, timeout=30)[1] == []  # none left running


def test_exit_codes_and_a_killed_rank_are_reported_and_the_zygote_serves_on(tmp_path):
    proc, _ = _fork(tmp_path, "exit", sys.exit, 3)
    assert _finish(proc) == (3, "")
    proc, _ = _fork(tmp_path, "raise", int, "not a number")
    code, output = _finish(proc)
    assert code == 1 and "ValueError: invalid literal for int()" in output
    proc, _ = _fork(tmp_path, "sleep", time.sleep, 60)
    proc.kill()
    assert _finish(proc)[0] == -9
    proc, result = _fork(tmp_path, "after", abs, -4)
    assert _finish(proc)[0] == 0 and cloudpickle.loads(result.read_bytes()) == 4


def test_a_changed_start_environment_or_a_dead_zygote_gets_a_new_one(tmp_path):
    env = {**os.environ, PRELOAD_ENV: ""}
    first = zygote(env)
    assert zygote(dict(env)) is first
    second = zygote({**env, "TF_ENABLE_ONEDNN_OPTS": "0"})  # read at import: a new zygote
    assert second is not first and not first.alive()
    second.proc.kill()
    second.proc.wait()
    third = zygote({**env, "TF_ENABLE_ONEDNN_OPTS": "0"})
    assert third is not second and third.alive()
    with pytest.raises(RuntimeError, match="zygote process .* stopped answering"):
        third.proc.kill()
        third.proc.wait()
        third.reply()


def test_a_transform_or_sparkdl_run_beside_a_fit_keeps_the_zygote():
    """A fit after a `transform` in the same worker started a new zygote (TensorFlow's import
    again): inference sets GPU memory growth and the backend in the worker's environment. And
    `sparkdl.run`'s default preload differed from a fit's explicit one only in spelling."""
    env = {k: v for k, v in os.environ.items() if k not in (BACKEND_ENV, GROWTH_ENV)}
    first = zygote({**env, PRELOAD_ENV: ""})
    assert zygote({**env, PRELOAD_ENV: "", GROWTH_ENV: "true", BACKEND_ENV: "tensorflow"}) is first
    without = {k: v for k, v in env.items() if k != PRELOAD_ENV}
    assert preload_key(without) == preload_key({**without, **rank_env("tensorflow")})
    assert preload_key(without) != preload_key({**without, **rank_env("torch")})


def _leave_a_child_holding_the_output(pid_file):
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(pid_file, "w") as f:
        f.write(str(child.pid))
    print("rank done")
    return 42


def _close_output_and_work(seconds):
    os.close(1)
    os.close(2)
    time.sleep(seconds)
    return 7


def _spec(**env):
    return TaskSpec(channel="unused", secret="unused", env={PRELOAD_ENV: "", **env})


def test_a_child_left_holding_the_rank_output_does_not_hold_its_task(tmp_path):
    pid_file = tmp_path / "child.pid"
    payload = cloudpickle.dumps((_leave_a_child_holding_the_output, (str(pid_file),), {}))
    start = time.monotonic()
    try:
        result = run_child(payload, {}, 0, "127.0.0.1", _spec())
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert cloudpickle.loads(result) == 42
    assert time.monotonic() - start < 60  # the child sleeps 120 s


def test_a_rank_that_closes_its_output_runs_past_the_reply_timeout(monkeypatch):
    monkeypatch.setattr(zygote_module, "_REPLY_TIMEOUT_S", 1.0)
    payload = cloudpickle.dumps((_close_output_and_work, (3.0,), {}))
    spec = _spec(SPARKDL_TEST_ZYGOTE="short-timeout")  # a new zygote, with the short timeout
    assert cloudpickle.loads(run_child(payload, {}, 0, "127.0.0.1", spec)) == 7


def _kill_the_zygote_once_its_rank_runs(workdirs):
    deadline = time.monotonic() + 60
    while not (list(workdirs.glob("*/payload.pkl")) and zygote_module._zygote is not None
               and zygote_module._zygote.key.get("SPARKDL_TEST_ZYGOTE") == "killed"):
        assert time.monotonic() < deadline, "the rank did not start in 60 s"
        time.sleep(0.05)
    time.sleep(0.5)
    zygote_module._zygote.proc.kill()


def test_a_dead_zygote_is_the_reported_error_and_the_rank_work_directory_goes(tmp_path,
                                                                              monkeypatch):
    workdirs = tmp_path / "tmp"
    workdirs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(workdirs))
    payload = cloudpickle.dumps((time.sleep, (60,), {}))
    killer = threading.Thread(target=_kill_the_zygote_once_its_rank_runs, args=(workdirs,))
    killer.start()
    try:
        with pytest.raises(RuntimeError, match="zygote process .* stopped answering"):
            run_child(payload, {}, 0, "127.0.0.1", _spec(SPARKDL_TEST_ZYGOTE="killed"))
    finally:
        killer.join()
    assert list(workdirs.iterdir()) == []


def test_work_directories_of_workers_that_are_gone_are_removed(tmp_path, monkeypatch):
    """A cancelled task's worker is SIGKILLed: its rank's work directory stays behind."""
    workdirs = tmp_path / "tmp"
    workdirs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(workdirs))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    prefix = _workdir_prefix()
    left = [f"{prefix}{gone.pid}-rank0-a", f"{prefix}{os.getpid()}-rank1-b",
            f"sparkdl-otherhost-worker{gone.pid}-rank0-c", "users-own"]
    for name in left:
        (workdirs / name).mkdir()
        (workdirs / name / "payload.pkl").write_bytes(b"x")
    assert cloudpickle.loads(run_child(cloudpickle.dumps((abs, (-5,), {})), {}, 0, "127.0.0.1",
                                       _spec())) == 5
    assert sorted(p.name for p in workdirs.iterdir()) == sorted(left[1:])
