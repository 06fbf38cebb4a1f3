"""A free TCP port on 127.0.0.1 for servers the fixtures start (Spark Connect, S3-API)."""
from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
