"""Waiting on a condition with a deadline instead of a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> float:
    """Poll ``condition`` every 50 ms until it is truthy; returns the seconds it took.
    Fails (AssertionError naming ``what``) once ``timeout`` has passed."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started
