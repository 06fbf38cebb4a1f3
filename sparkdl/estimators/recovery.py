"""Automatic resume of a fit whose ranks failed: relaunch from the last checkpoint, up to
`max_retries` times, unless the failure repeats identically (then a retry cannot fix it)."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from sparkdl.launch import LaunchError, RankFailedError

T = TypeVar("T")

_PY_ERROR = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception)\b: .*)$", re.MULTILINE)
_HOW = re.compile(r"(was killed by signal \w+|exited with code -?\d+|stopped making progress)")


def with_retries(launch: Callable[[], T], max_retries: int, epoch: Callable[[], int],
                 say: Callable[[str], None], before_retry: Callable[[], None]) -> T:
    """`launch()`, relaunched after a rank failure or a failed barrier job while retries are
    left; `epoch()` is the epoch in progress, `say` shows one line per retry, `before_retry`
    runs before each relaunch (waiting for a lost executor's replacement).

    A failure with the same rank, cause and epoch as the one before it is not retried. The
    error raised at the end lists the cause of every attempt."""
    causes: list[str] = []
    previous: tuple[Any, ...] | None = None
    while True:
        try:
            return launch()
        except (RankFailedError, LaunchError) as err:
            if not _retryable(err):
                raise
            rank, cause, where = getattr(err, "rank", None), _cause(err), epoch()
            causes.append(f"attempt {len(causes) + 1}: {_who(rank)}{cause} in epoch {where}")
            signature = (rank, cause, where)
            repeated = signature == previous
            previous = signature
            if repeated or len(causes) > max_retries:
                if len(causes) == 1:
                    raise  # retries are off: the failure as it came
                why = ("the same failure repeated" if repeated
                       else f"max_retries={max_retries} retries used")
                raise _final(err, f"fit failed after {len(causes)} attempt(s) ({why}):\n  "
                             + "\n  ".join(causes) + "\nlast failure:\n") from err
            say(f"sparkdl: {_who(rank)}{cause} in epoch {where}; retry {len(causes)}/"
                f"{max_retries} from the last checkpoint")
            before_retry()


def _retryable(err: LaunchError) -> bool:
    """Rank failures and failed barrier jobs (a lost executor); not timeouts or bad launches."""
    return isinstance(err, RankFailedError) or str(err).startswith("the barrier job failed")


def _cause(err: LaunchError) -> str:
    """What ended the attempt, in one line: the Python error a rank raised, how its process
    ended (signal, exit code, stall), or the job's first line."""
    text = str(err)
    errors = _PY_ERROR.findall(text)
    if errors:
        return errors[-1].strip()
    how = _HOW.search(text)
    return how.group(1) if how else text.strip().splitlines()[0]


def _who(rank: int | None) -> str:
    return f"rank {rank}: " if rank is not None else ""


def _final(err: LaunchError, prefix: str) -> LaunchError:
    if isinstance(err, RankFailedError):
        return RankFailedError(err.rank, prefix + str(err))
    return LaunchError(prefix + str(err))
