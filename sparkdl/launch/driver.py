"""Driver side of `sparkdl.run`: checks, one barrier stage of `num_proc` tasks, and a bounded wait.

Every wait has a deadline; a failing rank cancels the job at once and its message (rank, last
output lines) becomes the driver's exception.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import sysconfig
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cloudpickle

from sparkdl.launch.channel import DriverChannel
from sparkdl.launch.errors import LaunchError, RankFailedError, is_secondary
from sparkdl.launch.session import Session, active_session
from sparkdl.launch.slots import available_slots, check_gpus, check_num_proc
from sparkdl.launch.task import RESULT_SCHEMA, TaskSpec, make_barrier_task

log = logging.getLogger(__name__)

_POLL_S = 0.2
_FAILURE_SETTLE_S = 2.0  # after a failure, how long to wait for the other ranks' reports
_DRAIN_MAX_S = 1.0  # then how long at most for the messages still arriving
_CANCEL_WAIT_S = 60.0


def run(fn: Callable[..., Any], *, num_proc: int | None = None, args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
        start_timeout: float = 120.0, timeout: float | None = None,
        on_message: Callable[[int, Any], None] | None = None,
        description: str | None = None, stall_timeout: float | None = None,
        use_gpu: bool | None = None) -> list[Any]:
    """Run ``fn(*args, **kwargs)`` on `num_proc` Horovod ranks in one Spark barrier stage.

    Each rank is a process of its own, forked from a zygote that has imported TensorFlow, with
    Horovod's Gloo environment set: ``hvd.init()`` in `fn` joins the job's rendezvous. The
    active SparkSession (classic or Spark Connect, pyspark >= 4.0) runs the stage. A failing
    rank cancels the job at once; no rank process outlives it.

    Parameters
    ----------
    fn : callable
        The function each rank runs; pickled with cloudpickle (the user's own modules by value).
    num_proc : int, default None
        Ranks; None: the cluster's task slots (with task GPUs, the fewer of CPU and GPU
        slots).
    args : sequence, default ()
        Positional arguments of `fn`.
    kwargs : mapping, default None
        Keyword arguments of `fn`.
    env : mapping of str to str, default None
        Environment variables of the ranks (and of the zygote they fork from, so variables
        read at import time apply).
    start_timeout : float, default 120
        Seconds to wait for every rank to start.
    timeout : float, default None
        Seconds the whole job may take; None: no limit.
    on_message : callable, default None
        ``on_message(rank, payload)`` receives, on the driver, what ranks send with
        `sparkdl.launch.report` while the job runs.
    description : str, default None
        The job's description in the Spark UI; None: ``sparkdl: N Horovod ranks``.
    stall_timeout : float, default None
        A rank whose `sparkdl.launch.heartbeat` calls stop for this many seconds is ended and
        the job fails naming it; None: not watched.
    use_gpu : bool, default None
        None gives each rank its task's Spark-scheduled GPUs, if any, as
        ``CUDA_VISIBLE_DEVICES``; True requires them; False hides every GPU.

    Returns
    -------
    list
        The return values of `fn`, ordered by rank.

    Raises
    ------
    ValueError
        For a `num_proc` above the cluster's task slots, or a bad `stall_timeout`, before any
        job.
    RankFailedError
        When a rank fails (an exception, an exit, a signal, a stall): names the rank and quotes
        its last output lines.
    LaunchError
        When the ranks do not start within `start_timeout` or the job exceeds `timeout`.

    Examples
    --------
    >>> def train():
    ...     import horovod.tensorflow as hvd
    ...     hvd.init()
    ...     return hvd.rank()
    >>> sparkdl.run(train, num_proc=2)
    [0, 1]
    """
    session = active_session()
    check_gpus(session, use_gpu)
    num_proc = check_num_proc(num_proc, available_slots(session, num_proc, start_timeout))
    payload = dumps_by_value((fn, tuple(args), dict(kwargs or {})))
    env = {str(k): str(v) for k, v in (env or {}).items()}
    if stall_timeout is not None and not stall_timeout > 0:
        raise ValueError(f"stall_timeout {stall_timeout!r} is invalid; expected None or a "
                         "number of seconds > 0")
    description = description or f"sparkdl: {num_proc} Horovod ranks"
    job = _BarrierJob(session, num_proc, payload, env, description, stall_timeout, use_gpu)
    return job.run(start_timeout, timeout, on_message)


_by_value_lock = threading.Lock()


def dumps_by_value(obj: Any) -> bytes:
    """cloudpickle `obj`; code from the user's own modules (not installed packages, which
    executors can import) goes by value, so it needs no import on the executors."""
    with _by_value_lock:  # cloudpickle's by-value registry is global: one pickling at a time
        modules = _user_modules()
        for module in modules:
            cloudpickle.register_pickle_by_value(module)
        try:
            return cloudpickle.dumps(obj)
        finally:
            for module in modules:
                cloudpickle.unregister_pickle_by_value(module)


def _user_modules() -> list[Any]:
    """Loaded top-level modules whose files live outside the interpreter's installation and
    outside every site-packages directory on sys.path (also those a .pth file added)."""
    roots = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
                  | {sys.prefix, sys.base_prefix, sys.exec_prefix}
                  | {p for p in sys.path if p.endswith(("site-packages", "dist-packages"))})
    found = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if ("." in name or name in ("__main__", "sparkdl") or not path
                or os.path.realpath(path).startswith(roots) or path.startswith(roots)):
            continue
        found.append(module)
    return found


class _BarrierJob:
    """One barrier stage, watched from the driver through the job's message channel."""

    def __init__(self, session: Session, num_proc: int, payload: bytes, env: dict[str, str],
                 description: str, stall_timeout: float | None, use_gpu: bool | None) -> None:
        self.session = session
        self.description, self.stall_timeout, self.use_gpu = description, stall_timeout, use_gpu
        # of ranks that failed by stalling: (progress of their last beat, its time)
        self.stalls: dict[int, tuple[tuple[int, ...], float]] = {}
        self.num_proc = num_proc
        self.payload = payload
        self.env = env
        self.group = f"sparkdl-{uuid.uuid4().hex[:12]}"
        self.started: set[int] = set()
        self.failures: dict[int, str] = {}
        self.outcome: dict[str, Any] = {}

    def run(self, start_timeout: float, timeout: float | None,
            on_message: Callable[[int, Any], None] | None) -> list[Any]:
        shipped = self.session.ship(self.payload)
        try:
            with DriverChannel(advertise_host=self.session.driver_host()) as channel:
                spec = TaskSpec(channel=channel.address, secret=channel.secret, env=self.env,
                                stall_timeout=self.stall_timeout, start_timeout=start_timeout,
                                use_gpu=self.use_gpu)
                thread = threading.Thread(target=self._submit, args=(shipped, spec, channel.wake),
                                          daemon=True, name=self.group)
                thread.start()
                try:
                    error = self._watch(thread, channel, start_timeout, timeout, on_message)
                except BaseException:  # Ctrl-C or a notebook's stop button: end the ranks too
                    self._cancel(thread)
                    raise
                if error is not None:
                    self._cancel(thread)
                    raise error from self.outcome.get("error")
        finally:
            shipped.destroy()
        return [cloudpickle.loads(blob) for blob in self.outcome["results"]]

    def _cancel(self, thread: threading.Thread) -> None:
        """Cancel the job (its tasks kill their rank processes) and wait, bounded, for its end."""
        self.session.cancel(self.group)
        thread.join(_CANCEL_WAIT_S)
        if thread.is_alive():
            log.warning("job group %s still running %.0fs after its cancellation", self.group,
                        _CANCEL_WAIT_S)

    def _submit(self, shipped: Any, spec: TaskSpec, done: Callable[[], None]) -> None:
        """One barrier stage of num_proc single-row partitions (mapInArrow: a Spark Connect
        session has no RDDs); partition i is rank i. `done` wakes the watching thread at the end."""
        try:
            with self.session.job_group(self.group, self.description):
                task = make_barrier_task(shipped, spec)
                rows = (self.session.spark.range(0, self.num_proc, 1, self.num_proc)
                        .mapInArrow(task, RESULT_SCHEMA, barrier=True).collect())
            self.outcome["results"] = [bytes(row[0]) for row in rows]
        except BaseException as exc:  # handed to the watching thread
            self.outcome["error"] = exc
        finally:
            done()

    def _watch(self, thread: threading.Thread, channel: DriverChannel, start_timeout: float,
               timeout: float | None, on_message: Callable[[int, Any], None] | None
               ) -> Exception | None:
        """Follow the job until it ends; the error to raise, or None when it succeeded."""
        t0 = time.monotonic()
        while thread.is_alive():
            msg = channel.get(_POLL_S)
            if msg is not None and msg.get("type") == "wake":
                break  # the job has ended and its outcome is set
            self._handle(msg, on_message)
            if self.failures:
                self._drain(channel, on_message, settle=_FAILURE_SETTLE_S)
                return self._rank_error()
            elapsed = time.monotonic() - t0
            if len(self.started) < self.num_proc and elapsed > start_timeout:
                return LaunchError(
                    f"only {len(self.started)} of {self.num_proc} ranks started within "
                    f"start_timeout={start_timeout:g}s; the cluster may lack free task slots "
                    "(other jobs running) or executors may be failing to start Python workers")
            if timeout is not None and elapsed > timeout:
                return LaunchError(f"the job did not finish within timeout={timeout:g}s")
        self._drain(channel, on_message, settle=0.5 if "error" in self.outcome else 0.0)
        if self.failures:
            return self._rank_error()
        if "error" in self.outcome:
            return LaunchError(f"the barrier job failed: {_summary(self.outcome['error'])}")
        return None

    def _handle(self, msg: dict[str, Any] | None,
                on_message: Callable[[int, Any], None] | None) -> None:
        if msg is None:
            return
        rank, kind = int(msg.get("rank", -1)), msg.get("type")
        if kind == "started":
            self.started.add(rank)
        elif kind == "failed":
            self.failures.setdefault(rank, str(msg.get("message", "")))
            if msg.get("last_beat") is not None:
                progress = tuple(msg.get("progress") or (-1,))  # none yet: least far along
                self.stalls.setdefault(rank, (progress, float(msg["last_beat"])))
        elif kind == "message" and on_message is not None:
            try:
                on_message(rank, msg.get("payload"))
            except Exception:  # a broken progress callback must not kill the job
                log.exception("on_message callback failed")

    def _drain(self, channel: DriverChannel, on_message: Callable[[int, Any], None] | None,
               settle: float) -> None:
        """Handle messages for `settle` seconds, then until none comes for 0.05 s, but at most
        _DRAIN_MAX_S longer: ranks that keep reporting do not hold the driver."""
        deadline = time.monotonic() + settle
        while True:
            msg = channel.get(max(0.0, deadline - time.monotonic()) or 0.05)
            self._handle(msg, on_message)
            now = time.monotonic()
            if (msg is None and now >= deadline) or now >= deadline + _DRAIN_MAX_S:
                return

    def _rank_error(self) -> RankFailedError:
        """The root-cause failure: a rank that did not fail only because a peer went away; of
        ranks that stalled, the one least far along (its peers then wait on it in a
        collective), then the one whose beats stopped first."""
        ranks = sorted(self.failures)
        primary = [r for r in ranks
                   if not is_secondary(self.failures[r])]
        rank = (primary or ranks)[0]
        if self.stalls and (rank in self.stalls or not primary):
            rank = min(self.stalls, key=self.stalls.__getitem__)
        others = [r for r in ranks if r != rank]
        also = f"\n(ranks {others} failed after it)" if others else ""
        return RankFailedError(rank, self.failures[rank] + also)


_PY_ERROR = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)\b.*)$", re.MULTILINE)


def _summary(exc: BaseException) -> str:
    """The informative lines of a Spark/py4j error: its first line and, when an executor's Python
    failed, that traceback's last error line; not the Java stack."""
    text = str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if "Traceback" not in text:
        return first
    tail = text[text.rindex("Traceback"):]
    errors = [m.group(1) for m in _PY_ERROR.finditer(tail)]
    return f"{first}\nCause on the executor: {errors[0]}" if errors else first
