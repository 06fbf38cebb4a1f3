"""Errors raised on the driver by the launcher, each naming what failed and what was expected."""
from __future__ import annotations

# Messages of ranks that failed only because another rank went away first.
SECONDARY_FAILURES = ("gloo", "horovodinternalerror", "connection closed by peer", "broken pipe",
                      "connection reset", "horovod has been shut down")


def is_secondary(text: str) -> bool:
    """Whether a rank's failure text is one that another rank's failure causes."""
    return any(marker in text.lower() for marker in SECONDARY_FAILURES)


class LaunchError(RuntimeError):
    """A barrier job could not start or did not finish.

    Raised by `sparkdl.run` (and so `KerasEstimator.fit`) when the ranks do not all start
    within ``start_timeout`` (too few free task slots) or the job exceeds ``timeout``.
    """


class RankFailedError(LaunchError):
    """A rank's process failed: an exception, an exit, a signal or a stall.

    The message names the rank (the root cause when several failed) and quotes its last output
    lines. `KerasEstimator.fit` raises it once its retries are used up, beginning with the cause
    of every attempt.

    Parameters
    ----------
    rank : int
        The failed rank.
    message : str
        What happened, with the rank's last output lines.

    Attributes
    ----------
    rank : int
        The failed rank.
    """

    def __init__(self, rank: int, message: str) -> None:
        super().__init__(message)
        self.rank = rank
