"""Rate-limited logging of refused calls, with every refusal counted.

A caller can make the server refuse as often as it likes (a wrong token in a loop,
undecodable bytes, too many streams, a reader too slow to keep): one log line per
refusal would let it flood the log. ``RefusalLog`` writes at most one line per kind per
``interval`` seconds (the line says how many were left out since the last one) and
counts every refusal by kind; ``metrics.Metrics`` exposes the counts as
``stageconfig_refusals_total{kind}``.

Kinds are a closed set (``REFUSAL_KINDS``): a label never carries caller data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

REFUSAL_KINDS = (
    "unauthenticated",
    "permission_denied",
    "undecodable_request",
    "stream_limit",
    "watcher_dropped",
)
"""Every kind of refusal that is counted (the ``kind`` label's values)."""

DEFAULT_INTERVAL_SECONDS = 10.0


class RefusalLog:
    """Counts refusals by kind and logs at most one line per kind per interval."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval_seconds
        self._clock = clock
        self._counts = dict.fromkeys(REFUSAL_KINDS, 0)
        self._last_logged: dict[str, float] = {}
        self._suppressed = dict.fromkeys(REFUSAL_KINDS, 0)
        # Refusals come from the event loop, but a count read at scrape time comes from
        # the metrics thread: the lock keeps the numbers whole.
        self._lock = threading.Lock()

    def refused(self, kind: str, level: int, message: str, *args: object) -> None:
        """Count one refusal of ``kind``; log ``message % args`` at ``level`` unless a
        line of that kind was written less than ``interval`` seconds ago."""
        if kind not in self._counts:
            raise ValueError(f"unknown refusal kind {kind!r}")
        now = self._clock()
        with self._lock:
            self._counts[kind] += 1
            last = self._last_logged.get(kind)
            if last is not None and now - last < self._interval:
                self._suppressed[kind] += 1
                return
            self._last_logged[kind] = now
            left_out = self._suppressed[kind]
            self._suppressed[kind] = 0
        if left_out:
            message += " (and %d more like it in the last %g s, not logged)"
            args = (*args, left_out, self._interval)
        self._logger.log(level, message, *args)

    def counts(self) -> Mapping[str, int]:
        """How many refusals of each kind since start (every kind, zeros included)."""
        with self._lock:
            return dict(self._counts)


__all__ = ["DEFAULT_INTERVAL_SECONDS", "REFUSAL_KINDS", "RefusalLog"]
