"""``TimingOptions``: how a ConfigClient paces itself — heartbeats, staleness, reconnect
backoff, connection timeouts and status reports — in one frozen, validated object."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HEARTBEAT_SECONDS = 10.0
"""The server's default heartbeat period; assumed until the stream shows the real one."""
DEFAULT_CONNECT_TIMEOUT_SECONDS = 30.0
"""How long one server may stay unreachable before the client tries the next target
(and, with one target, how often it says so in the log)."""
DEFAULT_FAILOVER_CONNECT_TIMEOUT_SECONDS = 3.0
"""The same bound when several targets are given: leave a dead replica quickly."""
DEFAULT_REPORT_INTERVAL_SECONDS = 30.0
"""How often a client reports its status (ReportStatus) when nothing else prompts it."""


@dataclass(frozen=True, slots=True)
class TimingOptions:
    """How a ConfigClient paces itself; every field has a working default.

    ::

        ConfigClient(target, timing=TimingOptions(backoff_max_seconds=5, stale_grace_seconds=1))
    """

    heartbeat_seconds: float | None = None
    """The server's heartbeat period; None: learned from the stream (10 s assumed until
    then)."""
    stale_after_heartbeats: int = 3
    """Missed heartbeats on an open stream before the state turns STALE and the silent
    stream is re-established (a half-open connection, a frozen server)."""
    stale_grace_seconds: float = 2.0
    """How long the stream may be down, with no server answering, before the state
    turns STALE. A planned reconnect (the server's max connection age, a failover to
    another replica) that delivers within it causes no transition."""
    backoff_initial_seconds: float = 0.5
    """The first reconnect delay after a stream that reached the server ended."""
    backoff_max_seconds: float = 30.0
    """The longest reconnect delay: full-jitter exponential from the first to this."""
    connect_timeout_seconds: float | None = None
    """How long an unreachable server is waited for (the channel keeps retrying
    meanwhile, so a returning server is used at once) before the next target is tried;
    None: 3 s with several targets, 30 s with one."""
    report_interval_seconds: float = DEFAULT_REPORT_INTERVAL_SECONDS
    """How often the client reports its status to the server (ReportStatus): what it
    applied, what it refused and its task outcomes. A report also follows every applied
    revision within a second; the periodic one is sent even with nothing new (a
    keepalive: the server calls a client silent after three intervals without one)."""

    def __post_init__(self) -> None:
        if self.heartbeat_seconds is not None and self.heartbeat_seconds <= 0:
            raise ValueError("heartbeat_seconds must be positive")
        if self.stale_after_heartbeats < 1:
            raise ValueError("stale_after_heartbeats must be at least 1")
        if self.stale_grace_seconds <= 0:
            raise ValueError("stale_grace_seconds must be positive")
        if self.backoff_initial_seconds <= 0 or self.backoff_max_seconds < (
            self.backoff_initial_seconds
        ):
            raise ValueError("backoff needs 0 < backoff_initial_seconds <= backoff_max_seconds")
        if self.connect_timeout_seconds is not None and self.connect_timeout_seconds <= 0:
            raise ValueError("connect_timeout_seconds must be positive")
        if self.report_interval_seconds <= 0:
            raise ValueError("report_interval_seconds must be positive")

    def connect_timeout_for(self, targets: int) -> float:
        """The connect timeout in use with this many targets."""
        if self.connect_timeout_seconds is not None:
            return self.connect_timeout_seconds
        if targets > 1:
            return DEFAULT_FAILOVER_CONNECT_TIMEOUT_SECONDS
        return DEFAULT_CONNECT_TIMEOUT_SECONDS
