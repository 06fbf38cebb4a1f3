"""Errors raised on the driver by the launcher, each naming what failed and what was expected."""
from __future__ import annotations


class LaunchError(RuntimeError):
    """A barrier job could not start or did not finish."""


class RankFailedError(LaunchError):
    """A rank's process failed; the message names the rank and carries its last output lines."""

    def __init__(self, rank: int, message: str) -> None:
        super().__init__(message)
        self.rank = rank
