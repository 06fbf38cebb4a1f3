"""Executor side of a barrier job: set up Horovod's Gloo environment and run a rank's process.

Imported by Spark Python workers; needs pyspark's BarrierTaskContext but no SparkSession.
"""
from __future__ import annotations

import collections
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import psutil

from sparkdl.launch.channel import CHANNEL_ENV, RANK_ENV, SECRET_ENV, ChannelClient
from sparkdl.launch.gpus import rank_env, task_gpus
from sparkdl.launch.heartbeat import HEARTBEAT_ENV, read_progress
from sparkdl.launch.rendezvous import JobRendezvous, horovod_env, rendezvous_secret, slot_plan
from sparkdl.launch.zygote import RankProcess, zygote

TAIL_LINES = 40
OUTPUT_DRAIN_S = 5.0  # after a rank's exit, for its last output still in the pipe


@dataclass(frozen=True)
class TaskSpec:
    """What every task of one job needs besides the pickled function."""

    channel: str
    secret: str
    env: dict[str, str] = field(default_factory=dict)
    stall_timeout: float | None = None  # end a rank whose heartbeats stop for this long
    start_timeout: float = 120.0  # for rank 0's rendezvous address, as for the ranks' start
    use_gpu: bool | None = None  # None: the task's GPUs when Spark assigns some


class RankStalledError(RuntimeError):
    """A rank stopped making progress (no heartbeat within stall_timeout) and was ended."""

    def __init__(self, message: str, last_beat: float, progress: list[int] | None) -> None:
        super().__init__(message)
        self.last_beat = last_beat  # wall-clock time of its last heartbeat
        self.progress = progress  # what its last heartbeat recorded, e.g. [epoch, phase]


RESULT_SCHEMA = "result binary"


def make_barrier_task(payload: Any, spec: TaskSpec) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The barrier stage's mapInArrow function: one row in, the rank's pickled result out as a
    RESULT_SCHEMA batch. `payload.value` is the pickled fn (a Broadcast, or inline bytes)."""

    def barrier_task(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa
        from pyspark import BarrierTaskContext

        for _ in batches:  # consumed, so Spark reuses this worker and its zygote
            pass
        ctx = BarrierTaskContext.get()
        rank = ctx.partitionId()
        hosts = [info.address.rsplit(":", 1)[0] for info in ctx.getTaskInfos()]
        client = ChannelClient(spec.channel, spec.secret, rank)
        client.send("started", host=hosts[rank], pid=os.getpid())
        try:
            result = _run_rank(ctx, client, rank, hosts, payload.value, spec)
            yield pa.RecordBatch.from_pydict({"result": [result]},
                                             schema=pa.schema([("result", pa.binary())]))
        except BaseException as exc:
            client.send("failed", message=str(exc), last_beat=getattr(exc, "last_beat", None),
                        progress=getattr(exc, "progress", None))
            raise
        finally:
            client.close()

    return barrier_task


def _run_rank(ctx: Any, client: ChannelClient, rank: int, hosts: list[str], payload: bytes,
              spec: TaskSpec) -> bytes:
    plan = slot_plan(hosts)
    extra = {**rank_env(task_gpus(ctx), spec.use_gpu), CHANNEL_ENV: spec.channel,
             SECRET_ENV: spec.secret, RANK_ENV: str(rank)}
    secret = rendezvous_secret(spec.secret)
    # Rank 0's rendezvous address reaches the other tasks through the driver's channel, not
    # BarrierTaskContext.allGather: Spark checks for allGather's answer once a second, and
    # so every launch waited about 1 s there. (The channel forgets it when Spark retries.)
    key = "rendezvous"
    if rank == 0:
        with JobRendezvous(plan, secret) as rendezvous:
            client.publish(key, f"{hosts[0]}:{rendezvous.port}")
            env = horovod_env(plan[rank], hosts[0], rendezvous.port, _iface_of(hosts[rank]),
                              secret)
            return run_child(payload, {**env, **extra}, rank, hosts[rank], spec)
    address = client.lookup(key, spec.start_timeout)
    if not isinstance(address, str):
        raise RuntimeError(f"rank {rank} on {hosts[rank]} got no Horovod rendezvous address from "
                           f"rank 0's task within start_timeout={spec.start_timeout:g}s (through "
                           f"the driver at {spec.channel}); rank 0's task did not start or "
                           "failed first")
    host, port = address.rsplit(":", 1)
    env = horovod_env(plan[rank], host, int(port), _iface_of(hosts[rank]), secret)
    return run_child(payload, {**env, **extra}, rank, hosts[rank], spec)


def _iface_of(host: str) -> str | None:
    """The network interface holding `host`'s address, so Gloo talks over the one Spark uses."""
    try:
        ips = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return None
    for iface, addrs in psutil.net_if_addrs().items():
        if any(a.address in ips for a in addrs):
            return iface
    return None


def run_child(payload: bytes, env: dict[str, str], rank: int, host: str,
              spec: TaskSpec) -> bytes:
    """Run the pickled function in a rank process forked from this worker's zygote, stream its
    output with a rank prefix, return its pickled result; raise with the output's last lines when
    it fails, or when its heartbeats stop for `spec.stall_timeout` seconds (it is then killed)."""
    _remove_left_workdirs()
    workdir = tempfile.mkdtemp(prefix=f"{_workdir_prefix()}{os.getpid()}-rank{rank}-")
    try:
        return _run_in(workdir, payload, env, rank, host, spec)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _workdir_prefix() -> str:
    """Work directories are named by host too: a temporary directory shared with containers
    (other process ids) is never swept by mistake."""
    return f"sparkdl-{socket.gethostname()}-worker"


def _remove_left_workdirs() -> None:
    """Remove the work directories of this host's Python workers that are gone: Spark SIGKILLs
    a cancelled task's worker, whose own clean-up then never runs (they hold the payload)."""
    root, prefix = tempfile.gettempdir(), _workdir_prefix()
    for name in os.listdir(root):
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _run_in(workdir: str, payload: bytes, env: dict[str, str], rank: int, host: str,
            spec: TaskSpec) -> bytes:
    payload_path = os.path.join(workdir, "payload.pkl")
    result_path = os.path.join(workdir, "result.pkl")
    beat_path = os.path.join(workdir, "heartbeat")
    with open(payload_path, "wb") as f:
        f.write(payload)
    open(beat_path, "wb").close()
    python_path = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    start_env = {**os.environ, **spec.env, **python_path}  # what imports in the zygote see
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    # TMPDIR: the rank's temporary files are in its work directory, which goes with the rank
    proc = zygote(start_env).fork(payload_path, result_path,
                                  {**start_env, **env, HEARTBEAT_ENV: beat_path, "TMPDIR": workdir})
    stalled: list[tuple[float, Any]] = []  # (last beat, progress) once the watchdog ended it
    os.utime(beat_path)  # the stall clock starts now, not before a cold zygote's preload
    if spec.stall_timeout is not None:
        threading.Thread(target=_watch_beats,
                         args=(proc, beat_path, spec.stall_timeout, stalled),
                         daemon=True, name=f"sparkdl-watchdog-{rank}").start()
    # Output is forwarded beside the wait for the exit code: a rank that closes its output
    # does not end early, and a child process it left holding the pipe does not hold the task.
    forward = threading.Thread(target=_forward, args=(proc.stdout, f"[sparkdl rank {rank}] ", tail),
                               daemon=True, name=f"sparkdl-output-{rank}")
    forward.start()
    try:
        code = proc.wait()
        forward.join(OUTPUT_DRAIN_S)
        if not forward.is_alive():
            proc.stdout.close()
        if stalled:
            raise RankStalledError(describe_stall(rank, host, spec.stall_timeout or 0.0,
                                                  list(tail)), *stalled[0])
        if code != 0:
            raise RuntimeError(describe_failure(rank, host, code, list(tail)))
        with open(result_path, "rb") as f:
            return f.read()
    finally:
        # a dead zygote has taken its rank with it, and answers no wait
        if proc.poll() is None and proc.zygote.alive():
            proc.kill()
            proc.wait()


def _forward(stdout: IO[str], prefix: str, tail: collections.deque[str]) -> None:
    """Copy a rank's output lines to the task's stderr with `prefix`, keeping the last ones."""
    for line in stdout:
        tail.append(line.rstrip("\n"))
        sys.stderr.write(prefix + line)


def _watch_beats(proc: RankProcess, beat_path: str, stall_timeout: float,
                 stalled: list[tuple[float, Any]]) -> None:
    """Kill `proc` when its heartbeat file has not been touched for `stall_timeout` seconds."""
    while proc.poll() is None:
        try:
            last = os.path.getmtime(beat_path)
        except OSError:
            return  # the workdir is gone: the rank has ended
        if time.time() - last > stall_timeout:
            stalled.append((last, read_progress(beat_path)))
            proc.kill()
            return
        time.sleep(min(1.0, stall_timeout / 4))


def describe_stall(rank: int, host: str, stall_timeout: float, tail: list[str]) -> str:
    return (f"rank {rank} on {host} stopped making progress: no heartbeat for "
            f"stall_timeout={stall_timeout:g}s, so it was ended; its last output lines:\n"
            f"{_lines(tail)}")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal (SIGRTMIN + n) has no name in the enum
        return str(number)


def describe_failure(rank: int, host: str, code: int, tail: list[str]) -> str:
    """One message naming the rank, how it ended (exit code or signal) and its last output lines."""
    how = f"was killed by signal {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
    return f"rank {rank} on {host} {how}; its last output lines:\n{_lines(tail)}"


def _lines(tail: list[str]) -> str:
    return "\n".join(f"  {line}" for line in tail) or "  (no output)"
