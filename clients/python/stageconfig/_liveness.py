"""Liveness: is the server confirming the held config right now?

Two rules decide, and either one makes the client STALE:

- **silence on an open stream**: no message for ``stale_after_heartbeats`` heartbeat
  periods (a half-open connection, a frozen server). The period is configured or
  learned from the gaps between messages; the watchdog then cancels the silent stream
  so the watcher re-establishes it.
- **no stream**: the stream has been down for ``stale_grace_seconds`` (a killed server,
  a lost network) and no new stream has delivered since. A planned reconnect — the
  server's max connection age, a failover to another replica — delivers again within
  the grace and causes no transition.

Any message a stream delivers confirms the config at once (READY again). The watchdog
thread sleeps until the next moment either rule could flip, or until the watcher says a
stream went down.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime

from stageconfig._options import DEFAULT_HEARTBEAT_SECONDS, TimingOptions

_MIN_LEARNED_PERIOD = 0.1
_MAX_LEARNED_PERIOD = 600.0
_WATCHDOG_TICK = 1.0
"""The watchdog's longest sleep: also how often a silent stream is looked for while the
state is not READY."""
_WATCHDOG_MIN_WAIT = 0.02


class Liveness:
    """The timing facts of a client's streams and the STALE decision drawn from them.

    The watch thread reports (``stream_opened``, ``received``, ``stream_closed``); the
    watchdog thread and the facade read. Every field is a float or a bool replaced whole,
    so the readers need no lock.
    """

    def __init__(self, timing: TimingOptions) -> None:
        self._configured_period = timing.heartbeat_seconds
        self._stale_after_heartbeats = timing.stale_after_heartbeats
        self._grace = timing.stale_grace_seconds
        self.period = timing.heartbeat_seconds or DEFAULT_HEARTBEAT_SECONDS
        """The heartbeat period in use: configured, or learned from the stream."""
        self.last_confirmed: float | None = None  # monotonic; system-wide, survives fork
        self.cache_written_at: datetime | None = None
        self._down_since: float | None = None
        self._call_started_at = 0.0
        self._call_last_message_at: float | None = None
        self._call_heartbeats = 0
        self._call_learned = False
        self._call_silent = False
        self._wake = threading.Event()

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh event, and no stream in this process yet."""
        self._wake = threading.Event()
        if self._down_since is None:
            self._down_since = time.monotonic()

    # -- reports from the watch thread -------------------------------------------------------

    def stream_opened(self, now: float) -> None:
        """A new stream was opened (nothing received on it yet)."""
        self._call_started_at = now
        self._call_last_message_at = None
        self._call_heartbeats = 0
        self._call_learned = False
        self._call_silent = False

    def received(self, now: float, *, heartbeat: bool, first_of_resume: bool) -> bool:
        """A message arrived on the open stream: the server confirms the held config.
        True when it is the stream's first message."""
        if heartbeat:  # before the timestamps move: it measures the gap
            self._learn_period(now, first_of_resume=first_of_resume and not self._call_heartbeats)
            self._call_heartbeats += 1
        first = self._call_last_message_at is None
        self._call_last_message_at = now
        self.last_confirmed = now
        self._down_since = None
        return first

    def stream_closed(self, now: float) -> None:
        """The stream ended or failed: the grace runs from the first such moment since a
        stream last delivered."""
        if self._down_since is None:
            self._down_since = now
        self._wake.set()

    # -- decisions -----------------------------------------------------------------------------

    @property
    def stale_after(self) -> float:
        """Seconds of silence on an open stream that make the state STALE."""
        return self._stale_after_heartbeats * self.period

    def is_live(self, now: float) -> bool:
        """Whether the server confirmed the held config recently enough for READY."""
        last = self.last_confirmed
        if last is None or now - last > self.stale_after:
            return False
        down = self._down_since
        return down is None or now - down <= self._grace

    def staleness_seconds(self, now: float) -> float:
        """Seconds since the server last confirmed the held config (or since the cache
        file was written); ``inf`` when neither."""
        if self.last_confirmed is not None:
            return max(0.0, now - self.last_confirmed)
        if self.cache_written_at is not None:
            return max(0.0, time.time() - self.cache_written_at.timestamp())
        return math.inf

    def call_went_silent(self, now: float) -> bool:
        """Whether the open stream has been silent past the staleness bound (reported
        once per stream): the watcher cancels it."""
        if self._call_silent:
            return False
        last = self._call_last_message_at or self._call_started_at
        if now - last <= self.stale_after:
            return False
        self._call_silent = True
        if (
            self._configured_period is None
            and self._call_last_message_at is not None
            and self._call_heartbeats == 0
        ):
            # Data but no heartbeat in time: the server's period must be longer than the
            # one learned from an earlier stream. Widen it rather than loop.
            self.period = min(_MAX_LEARNED_PERIOD, self.period * 2)
        return True

    def _learn_period(self, now: float, first_of_resume: bool) -> None:
        # The server restarts its heartbeat timer after every message it writes, so the
        # time since the previous message is the period — except for the heartbeat that
        # closes a resume's burst of missed changes, which follows them at once.
        if self._configured_period is not None or first_of_resume:
            return
        previous = self._call_last_message_at
        if previous is None:
            return
        gap = min(_MAX_LEARNED_PERIOD, max(_MIN_LEARNED_PERIOD, now - previous))
        # The first gap of a stream replaces what an earlier stream taught (the server
        # may have restarted with another period); later ones only tighten it.
        self.period = min(self.period, gap) if self._call_learned else gap
        self._call_learned = True

    # -- the watchdog --------------------------------------------------------------------------

    def wake(self) -> None:
        """Interrupt the watchdog's sleep (close(), or a stream went down)."""
        self._wake.set()

    def run_watchdog(
        self, stop: threading.Event, live: Callable[[], bool], tick: Callable[[], bool]
    ) -> None:
        """The watchdog thread: call ``tick`` (re-derive the state, cancel a silent
        stream) whenever a rule may have flipped, until ``stop`` is set or ``tick``
        answers False. ``live`` says whether the client is READY now."""
        wake = self._wake
        while not stop.is_set():
            wait = self._next_wait(time.monotonic()) if live() else _WATCHDOG_TICK
            wake.wait(wait)
            wake.clear()
            if stop.is_set() or not tick():
                return

    def _next_wait(self, now: float) -> float:
        deadlines = [_WATCHDOG_TICK]
        if self.last_confirmed is not None:
            deadlines.append(self.last_confirmed + self.stale_after - now)
        if self._down_since is not None:
            deadlines.append(self._down_since + self._grace - now)
        return max(_WATCHDOG_MIN_WAIT, min(deadlines))
