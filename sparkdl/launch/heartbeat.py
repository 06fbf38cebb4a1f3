"""Rank-side progress beats: the task that runs a rank ends it when its beats stop for longer than
the job's stall_timeout (a rank blocked in a callback or waiting on a silent peer).

A beat touches a file the task watches: no network, no thread.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence

HEARTBEAT_ENV = "SPARKDL_HEARTBEAT_FILE"
_MIN_INTERVAL_S = 1.0
_last = 0.0


def heartbeat(force: bool = False, progress: Sequence[int] | None = None) -> None:
    """Tell the task watching this rank that it is making progress.

    Call it from any loop that should never stop for long (`KerasEstimator` training calls it
    every batch); with ``sparkdl.run(..., stall_timeout=s)``, a rank that goes `s` seconds
    without a beat is ended and the job fails naming it. A beat touches a file: no network, no
    thread. Does nothing outside `sparkdl.run`.

    Parameters
    ----------
    force : bool, default False
        Beat even if the last beat was less than a second ago (the default limit).
    progress : sequence of int, default None
        How far the rank got, e.g. ``(epoch, phase)``, recorded with the beat: when several
        ranks stall, the one least far along is named.
    """
    global _last
    path = os.environ.get(HEARTBEAT_ENV)
    now = time.monotonic()
    if not path or (not force and progress is None and now - _last < _MIN_INTERVAL_S):
        return
    _last = now
    try:
        if progress is None:
            os.utime(path)
        else:
            with open(path, "w") as f:
                json.dump(list(progress), f)
    except OSError:
        pass  # the task's workdir is gone: the task is ending this rank anyway


def read_progress(path: str) -> list[int] | None:
    """The progress last recorded in a heartbeat file, or None."""
    try:
        with open(path) as f:
            text = f.read()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None
