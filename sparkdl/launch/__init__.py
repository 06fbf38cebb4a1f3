"""Barrier-mode Spark jobs running Horovod ranks over Gloo; knows nothing of Keras."""
from __future__ import annotations

from sparkdl.launch.channel import report
from sparkdl.launch.driver import run
from sparkdl.launch.errors import LaunchError, RankFailedError
from sparkdl.launch.heartbeat import heartbeat

__all__ = ["run", "report", "heartbeat", "LaunchError", "RankFailedError"]
