"""Waiting for a lab to become ready: poll a check until it passes, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from ccie_remote.errors import LabError

T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None],
    what: str,
    timeout: float = 30,
    interval: float = 0.1,
) -> T:
    """Call CHECK until it returns something other than None or False, and return that.

    Raise LabError naming WHAT once TIMEOUT seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if outcome is not None and outcome is not False:
            return outcome
        if time.monotonic() >= deadline:
            raise LabError(f"{what}: not ready after {timeout:.0f}s")
        time.sleep(interval)
