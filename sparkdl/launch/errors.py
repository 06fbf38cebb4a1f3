"""Errors raised on the driver by the launcher, each naming what failed and what was expected."""
from __future__ import annotations

# Messages of ranks that failed only because another rank went away first.
SECONDARY_FAILURES = ("gloo", "horovodinternalerror", "connection closed by peer", "broken pipe",
                      "connection reset", "horovod has been shut down")


def is_secondary(text: str) -> bool:
    """Whether a rank's failure text is one that another rank's failure causes."""
    return any(marker in text.lower() for marker in SECONDARY_FAILURES)


class LaunchError(RuntimeError):
    """A barrier job could not start or did not finish."""


class RankFailedError(LaunchError):
    """A rank's process failed; the message names the rank and carries its last output lines."""

    def __init__(self, rank: int, message: str) -> None:
        super().__init__(message)
        self.rank = rank
