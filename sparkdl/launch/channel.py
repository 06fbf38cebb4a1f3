"""A small JSON-lines channel from ranks to the driver: start/failure notices and user messages,
and values one task publishes for the job's other tasks to look up (rank 0's rendezvous address).

The driver owns a TCP server (one per job, random port on the driver's address, per-job secret);
tasks and their child processes connect as clients. A peer must send its whole hello line with
the secret within `hello_timeout` seconds; lines are bounded. Neither side needs Spark, so
executors import this.
"""
from __future__ import annotations

import hmac
import json
import os
import queue
import secrets
import socket
import socketserver
import threading
from typing import Any

CHANNEL_ENV = "SPARKDL_CHANNEL"
SECRET_ENV = "SPARKDL_CHANNEL_SECRET"
RANK_ENV = "SPARKDL_RANK"
_CONNECT_TIMEOUT_S = 10.0
HELLO_TIMEOUT_S = 10.0
_SERVE_POLL_S = 0.05
MAX_LINE_BYTES = 1 << 20  # one message; a longer line is dropped


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        self.request.settimeout(server.hello_timeout)
        # one deadline for the whole hello, not per read: a peer sending a byte at a time
        # would otherwise hold this handler's thread for as long as it likes
        deadline = threading.Timer(server.hello_timeout, _shut, args=(self.request,))
        deadline.start()
        try:
            try:
                hello = self.rfile.readline(MAX_LINE_BYTES)
            finally:
                deadline.cancel()
            if not _authentic(hello, server.secret):
                return  # not one of this job's ranks, or too late
            self.request.settimeout(None)  # a rank may be silent for a whole epoch
            self._read_messages(server)
        except OSError:  # timed out, reset, or closed by the server's shutdown
            return

    def _read_messages(self, server: _Server) -> None:
        while line := self.rfile.readline(MAX_LINE_BYTES):
            if not line.endswith(b"\n"):  # over the limit (or cut by EOF): skip to its end
                while (rest := self.rfile.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
                continue
            try:
                message = json.loads(line)
            except ValueError:
                continue
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "publish":
                server.publish(str(message.get("key")), message.get("value"))
            elif kind == "lookup":
                value = server.lookup(str(message.get("key")), float(message.get("timeout", 0)))
                self.wfile.write(_line({"value": value}))
            else:
                if kind == "started":
                    server.note_start(message.get("rank"))
                server.inbox.put(message)


def _shut(sock: socket.socket) -> None:
    """End a connection from the server side (its reads then end)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _line(obj: dict[str, Any]) -> bytes:
    """One message on the wire: a JSON line."""
    return (json.dumps(obj, default=str) + "\n").encode()


def _authentic(hello_line: bytes, secret: str) -> bool:
    """The first line is this job's hello: a whole JSON line carrying the secret."""
    if not hello_line.endswith(b"\n"):
        return False
    try:
        hello = json.loads(hello_line)
    except ValueError:
        return False
    given = hello.get("secret") if isinstance(hello, dict) else None
    return isinstance(given, str) and hmac.compare_digest(given.encode(), secret.encode())


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], secret: str, hello_timeout: float) -> None:
        super().__init__(addr, _Handler)
        self.secret, self.hello_timeout = secret, hello_timeout
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self._published: dict[str, Any] = {}
        self._started: set[Any] = set()
        self._changed = threading.Condition()
        self.closed = False

    def note_start(self, rank: Any) -> None:
        """A task's start; a rank starting again means Spark runs the barrier stage again, so
        what the last attempt's tasks published (rank 0's old address) is forgotten."""
        with self._changed:
            if rank in self._started:
                self._started.clear()
                self._published.clear()
            self._started.add(rank)

    def publish(self, key: str, value: Any) -> None:
        with self._changed:
            self._published[key] = value
            self._changed.notify_all()

    def lookup(self, key: str, timeout: float) -> Any:
        """The value published under `key`; None when none comes within `timeout` seconds or
        the channel closes first."""
        with self._changed:
            self._changed.wait_for(lambda: key in self._published or self.closed, timeout)
            return self._published.get(key)

    def close_lookups(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()


class DriverChannel:
    """Driver end: listens on a random port of `advertise_host` (the address the ranks reach the
    driver on, not every interface) and queues every message the job's ranks send."""

    def __init__(self, advertise_host: str, hello_timeout: float = HELLO_TIMEOUT_S) -> None:
        self.secret = secrets.token_hex(16)
        self._server = _Server((advertise_host, 0), self.secret, hello_timeout)
        self.bound_host = self._server.server_address[0]
        self.address = f"{advertise_host}:{self._server.server_address[1]}"
        # shutdown() waits up to one poll interval (socketserver's default, 0.5 s, was a tenth
        # of a small fit's overhead)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": _SERVE_POLL_S}, daemon=True,
                                        name="sparkdl-channel")

    def __enter__(self) -> DriverChannel:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close_lookups()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def wake(self) -> None:
        """Make a waiting `get` return now (with a message of type "wake")."""
        self._server.inbox.put({"type": "wake"})

    def get(self, timeout: float) -> dict[str, Any] | None:
        """Next message, or None when none arrives within `timeout` seconds."""
        try:
            return self._server.inbox.get(timeout=timeout)
        except queue.Empty:
            return None


class ChannelClient:
    """Rank end: sends JSON messages to the driver; a lost driver never breaks the rank."""

    def __init__(self, address: str, secret: str, rank: int) -> None:
        self.rank = rank
        self._lock = threading.Lock()
        host, port = address.rsplit(":", 1)
        self._sock: socket.socket | None = socket.create_connection(
            (host, int(port)), timeout=_CONNECT_TIMEOUT_S)
        self._sock.settimeout(_CONNECT_TIMEOUT_S)
        self._replies = self._sock.makefile("rb")
        self._write({"secret": secret, "rank": rank})

    @classmethod
    def from_env(cls) -> ChannelClient | None:
        """The client of a child process launched by `sparkdl.run`, or None outside one."""
        address = os.environ.get(CHANNEL_ENV)
        if not address:
            return None
        return cls(address, os.environ[SECRET_ENV], int(os.environ.get(RANK_ENV, "0")))

    def send(self, kind: str, **fields: Any) -> None:
        self._write({"type": kind, "rank": self.rank, **fields})

    def publish(self, key: str, value: Any) -> None:
        """Make `value` (JSON) what the job's tasks get from `lookup(key)`."""
        self.send("publish", key=key, value=value)

    def lookup(self, key: str, timeout: float) -> Any:
        """The value a task of this job published under `key`, waiting up to `timeout` seconds
        for it; None when none comes in time or the driver is gone."""
        with self._lock:
            if self._sock is None:
                return None
            try:
                self._sock.settimeout(timeout + _CONNECT_TIMEOUT_S)  # the driver answers first
                self._sock.sendall(_line({"type": "lookup", "rank": self.rank, "key": key,
                                          "timeout": timeout}))
                reply = self._replies.readline(MAX_LINE_BYTES)
                return json.loads(reply)["value"] if reply.endswith(b"\n") else None
            except (OSError, ValueError, KeyError, TypeError):
                return None
            finally:  # later sends keep the short timeout, whatever the lookup's end
                self._sock.settimeout(_CONNECT_TIMEOUT_S)

    def _write(self, obj: dict[str, Any]) -> None:
        data = _line(obj)
        with self._lock:
            if self._sock is None:
                return
            try:
                self._sock.sendall(data)
            except OSError:
                self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._replies.close()
            self._sock.close()
            self._sock = None


_client: ChannelClient | None = None
_client_tried = False
_client_lock = threading.Lock()


def report(payload: Any) -> None:
    """Send `payload` from a rank to the driver's `on_message` callback of `sparkdl.run`.

    Does nothing outside a process launched by `sparkdl.run`, so training code can call it
    freely.

    Parameters
    ----------
    payload : object
        A JSON-serialisable value.

    Examples
    --------
    >>> from sparkdl.launch import report
    >>> report({"epoch": 3, "loss": 0.12})   # on a rank
    """
    global _client, _client_tried
    with _client_lock:
        if not _client_tried:
            _client_tried = True
            try:
                _client = ChannelClient.from_env()
            except OSError:
                _client = None  # the driver is gone; training goes on without progress reports
        if _client is not None:
            _client.send("message", payload=payload)
