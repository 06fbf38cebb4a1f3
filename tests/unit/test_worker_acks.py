"""A Spark Python worker's link to its executor is a loopback TCP connection in request-reply
mode, where Linux delays acknowledgements by up to 40 ms; transform makes it acknowledge and send
at once before each task reads its input."""
from __future__ import annotations

import subprocess
import sys

import pytest

_SCRIPT = """
import socket
from sparkdl.train.predict import acknowledge_at_once

server = socket.create_server(("127.0.0.1", 0))
executor = socket.create_connection(server.getsockname())
worker, _ = server.accept()
unix_a, unix_b = socket.socketpair()  # not TCP: left alone, without an error
for _ in range(5):  # request and reply, as tasks go: the connection starts delaying acks
    executor.sendall(b"task"); worker.recv(4); worker.sendall(b"done"); executor.recv(4)

def state(sock):
    return (sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

before = state(worker)
acknowledge_at_once()
print(*before, *state(worker), *state(executor))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_QUICKACK is Linux's")
def test_loopback_sockets_acknowledge_and_send_at_once():
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    quick_before, nodelay_before, *after = map(int, out.stdout.split())
    assert (quick_before, nodelay_before) == (0, 0)  # delayed acks, Nagle: what tasks met
    assert after == [1, 1, 1, 1]  # both ends of the loopback connection
