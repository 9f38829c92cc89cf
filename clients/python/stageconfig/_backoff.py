"""Reconnect delays: exponential backoff with full jitter.

Full jitter (a uniform draw between 0 and the exponential cap) spreads a fleet of
workers that lost the server at the same moment, so they do not all come back in the
same millisecond when it returns.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays of 0..min(maximum, initial·2ⁿ) for the n-th consecutive failure."""

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("backoff needs 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self._rng = rng or random.Random()  # jitter, not cryptography
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._attempt

    def cap(self) -> float:
        """The upper bound of the next delay."""
        # min() before the power would overflow for long outages; the exponent is bounded.
        return min(self.maximum, self.initial * 2.0 ** min(self._attempt, 62))

    def next_delay(self) -> float:
        """The next delay, drawn uniformly from [0, cap]; moves to the next attempt."""
        delay = self._rng.uniform(0.0, self.cap())
        self._attempt += 1
        return delay

    def reset(self) -> None:
        """Back to the first attempt (after a stream delivered something)."""
        self._attempt = 0
