"""Rank processes forked from a zygote that has imported TensorFlow once per Spark Python worker.

A fresh interpreter per rank paid TensorFlow's import (3-8 s) at every launch. The Spark worker
instead keeps one zygote process (`sparkdl.launch.zygote.serve`) that imports the modules in
SPARKDL_PRELOAD (default: the framework of KERAS_BACKEND, TensorFlow unless set, Keras, Horovod's
ops and sparkdl's Keras worker, none of them initialised) and forks each rank from it. A rank
still gets its own process, environment and output pipe, and dies with the zygote, which dies
with the worker.
"""
from __future__ import annotations

import ctypes
import importlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
from typing import IO, Any

import cloudpickle

from sparkdl.launch.errors import is_secondary
from sparkdl.launch.gpus import GROWTH_ENV
from sparkdl.train.backend import BACKEND_ENV, PRELOAD

PRELOAD_ENV = "SPARKDL_PRELOAD"
RANK_NAME = "sparkdl-rank"  # the process name (ps, psutil) of a forked rank
ZYGOTE_NAME = "sparkdl-zygote"
_REPLY_TIMEOUT_S = 300.0  # the first reply waits for the preload (TensorFlow) on a busy host
_MAX_MESSAGE = 1 << 20


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies: no rank outlives its task."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _set_name(name: str) -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME
    except OSError:
        pass


class RankProcess:
    """A forked rank as its task sees it: pid, output stream and exit code (Popen's conventions:
    a negative code is the signal that ended it)."""

    def __init__(self, zygote: Zygote, pid: int, stdout: IO[str]) -> None:
        self.zygote = zygote
        self.pid = pid
        self.stdout = stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def wait(self) -> int:
        """The exit code, once the rank has ended (however long it runs)."""
        if self.returncode is None:
            self.returncode = int(self.zygote.reply(patient=True)["exit"])
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Zygote:
    """The worker's handle on its zygote process; one rank at a time (a worker runs one task)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.key = preload_key(env)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # no preexec_fn: Popen then runs the process's fork handlers, and gRPC's (a Spark Connect
        # client's) crash the child before exec; the zygote ties itself to this process instead
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", "from sparkdl.launch.zygote import serve; "
             f"serve({theirs.fileno()}, {os.getpid()})"],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
        theirs.close()
        self.sock = ours
        self.sock.settimeout(_REPLY_TIMEOUT_S)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def fork(self, payload_path: str, result_path: str, env: dict[str, str]) -> RankProcess:
        """Fork a rank that runs the pickled function at `payload_path` with environment `env`."""
        read_end, write_end = os.pipe()
        try:
            request = {"args": [payload_path, result_path], "env": env, "path": sys.path,
                       "cwd": os.getcwd()}
            socket.send_fds(self.sock, [json.dumps(request).encode()], [write_end])
        finally:
            os.close(write_end)
        stdout = os.fdopen(read_end, "r", errors="replace")
        try:
            return RankProcess(self, int(self.reply()["pid"]), stdout)
        except BaseException:
            stdout.close()
            raise

    def reply(self, patient: bool = False) -> dict[str, Any]:
        """The zygote's next answer; `patient`: wait as long as the zygote lives (a rank's exit
        code comes when the rank ends), else at most _REPLY_TIMEOUT_S."""
        while True:
            try:
                message = self.sock.recv(_MAX_MESSAGE)
                break
            except TimeoutError:
                if not (patient and self.alive()):
                    message = b""
                    break
        if not message:
            self.close()
            raise RuntimeError(f"sparkdl's zygote process (pid {self.proc.pid}) stopped answering"
                               f" (exit code {self.proc.poll()}); see the executor's stderr")
        return json.loads(message)

    def close(self) -> None:
        self.sock.close()
        if self.alive():
            self.proc.kill()
        self.proc.wait()


_zygote: Zygote | None = None


def preload_key(env: dict[str, str]) -> dict[str, str]:
    """`env` as far as the preload is concerned: without GPU memory growth (inference sets it in
    the worker; TensorFlow reads it at GPU set-up, in the rank), with the default backend and
    preload list spelled out, so that neither a `transform` nor `sparkdl.run` beside a fit starts
    a new zygote (a TensorFlow import)."""
    key = {k: v for k, v in env.items() if k != GROWTH_ENV}
    key.setdefault(BACKEND_ENV, "tensorflow")
    key.setdefault(PRELOAD_ENV, PRELOAD.get(key[BACKEND_ENV], PRELOAD["tensorflow"]))
    return key


def zygote(env: dict[str, str]) -> Zygote:
    """This worker's zygote, started with `env` (what the preloaded modules read at import time);
    a new one replaces it when that environment changes (`preload_key`) or it has died."""
    global _zygote
    if _zygote is None or _zygote.key != preload_key(env) or not _zygote.alive():
        if _zygote is not None:
            _zygote.close()
        _zygote = Zygote(env)
    return _zygote


def _preload() -> None:
    for name in filter(None, preload_key(dict(os.environ))[PRELOAD_ENV].split(",")):
        try:
            importlib.import_module(name.strip())
        except Exception as exc:  # the rank imports what it needs itself
            print(f"sparkdl zygote: could not preload {name}: {exc!r}", file=sys.stderr)


def serve(fd: int, worker_pid: int) -> None:
    """The zygote's loop: for each request fork a rank, answer its pid, reap it, answer its exit
    code. Ends when the worker closes its end or dies."""
    die_with_parent()
    if os.getppid() != worker_pid:  # the worker died before the line above
        return
    _set_name(ZYGOTE_NAME)
    sock = socket.socket(fileno=fd)
    _preload()
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 1)
        except OSError:
            return
        if not message:
            return
        request = json.loads(message)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            sock.close()
            _become_rank(fds[0], request)
        os.close(fds[0])
        sock.send(json.dumps({"pid": pid}).encode())
        _, status = os.waitpid(pid, 0)
        sock.send(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode())


def _become_rank(out_fd: int, request: dict[str, Any]) -> None:
    """In the forked child: take the rank's output pipe, environment, sys.path and directory, run
    its function, and exit without returning to the zygote's loop."""
    code = 1
    try:
        die_with_parent()
        _set_name(RANK_NAME)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        os.environ.clear()
        os.environ.update(request["env"])
        tempfile.tempdir = None  # the rank's TMPDIR, not the zygote's cached one
        sys.path[:] = request["path"]
        os.chdir(request["cwd"])
        _reseed()
        run_payload(*request["args"])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:
        _print_failure(exc)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # skip interpreter teardown (TensorFlow and Horovod take about 0.6 s to unwind)
        os._exit(code)


def _print_failure(exc: BaseException) -> None:
    """The rank's traceback; for a failure that another rank's causes (Horovod shut down, a
    peer gone), its first line only, so that the root cause is not buried in the console."""
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    if is_secondary(f"{type(exc).__name__}: {first}"):
        print(f"{type(exc).__name__}: {first} (after another rank's failure: traceback left "
              "out)", file=sys.stderr)
    else:
        traceback.print_exc()


def _reseed() -> None:
    """Forked ranks would otherwise share the zygote's random state."""
    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()


def run_payload(payload_path: str, result_path: str) -> None:
    """Run the cloudpickled (fn, args, kwargs) at `payload_path`; write its pickled return value
    to `result_path` atomically."""
    with open(payload_path, "rb") as f:
        fn, args, kwargs = cloudpickle.load(f)
    result = fn(*args, **kwargs)
    with open(result_path + ".tmp", "wb") as f:
        cloudpickle.dump(result, f)
    os.replace(result_path + ".tmp", result_path)
