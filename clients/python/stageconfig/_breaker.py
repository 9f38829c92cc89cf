"""Circuit breakers of the routes this process calls, and their counters for the status
reports.

One breaker per route and process (a route is a stage's provider, key and model: a
breaker follows its route when an admin reorders the list). CLOSED: calls go to the
route. After ``failure_threshold`` consecutive failures — or at once when the provider
said when to come back (``Retry-After``) — it is OPEN: calls skip the route without
touching it for a cooldown that doubles with every opening in a row
(``base_cooldown_seconds`` · ``multiplier``\\ :sup:`n`, at most
``max_cooldown_seconds``; ``Retry-After`` sets it instead). When the cooldown is over it
is HALF_OPEN: one call tries the route (the others skip it meanwhile); success closes
it, failure opens it again for the next, longer cooldown.

Every breaker also counts, since the previous report: calls that succeeded or failed
on the route, calls that moved on from it (failovers), and openings. ``drain`` hands
them to the report thread, which resets them — the same "since the previous report"
as task outcomes. A forked child starts with no breakers and no counts.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from dataclasses import dataclass

from stageconfig._route_failures import RouteFailure
from stageconfig._types import BreakerState, ProviderKind, Route, StageType, StatusCause

log = logging.getLogger("stageconfig.routing")

MAX_ROUTES_REPORTED = 9
"""Routes of one stage one report carries (the primary and at most 8 fallbacks)."""


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """How a route's circuit breaker opens and how long it stays open."""

    failure_threshold: int = 3
    """Consecutive failures of a route that open its breaker."""
    base_cooldown_seconds: float = 5.0
    """How long the breaker stays open the first time."""
    max_cooldown_seconds: float = 300.0
    """The longest cooldown (a ``Retry-After`` may ask for up to an hour)."""
    multiplier: float = 2.0
    """Each opening in a row (a failed half-open trial) multiplies the cooldown by this."""

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        for name in ("base_cooldown_seconds", "max_cooldown_seconds"):
            value = getattr(self, name)
            if math.isnan(value) or value < 0:
                raise ValueError(f"{name} must be a number >= 0")
        if self.max_cooldown_seconds < self.base_cooldown_seconds:
            raise ValueError("max_cooldown_seconds must be >= base_cooldown_seconds")
        if math.isnan(self.multiplier) or self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")

    def cooldown(self, openings: int) -> float:
        """The cooldown of the ``openings``-th opening in a row (1 is the first)."""
        exponent = min(max(0, openings - 1), 64)
        return min(
            self.max_cooldown_seconds, self.base_cooldown_seconds * self.multiplier**exponent
        )


RouteKey = tuple[StageType, ProviderKind, str, str]
"""(stage, provider, key digest, model): who a breaker belongs to."""


def route_key(stage: StageType, route: Route) -> RouteKey:
    """The breaker key of ``route`` in ``stage`` (the key only as a digest)."""
    digest = hashlib.sha256(route.api_key.encode()).hexdigest()[:24]
    return (stage, route.provider_kind, digest, route.model)


def route_label(index: int, provider: ProviderKind) -> str:
    """``primary GEMINI`` / ``fallback 1 OPENAI``: how logs and errors name a route."""
    where = "primary" if index == 0 else f"fallback {index}"
    return f"{where} {provider.value}"


@dataclass(frozen=True, slots=True)
class RouteCounts:
    """One route's breaker and counts since the previous drain (a RouteReport)."""

    route_index: int
    provider_kind: ProviderKind
    api_key_fingerprint: str
    breaker_state: BreakerState
    succeeded: int
    failed: int
    failovers: int
    breaker_opened: int
    last_failure_cause: StatusCause


class _Breaker:
    """One route's breaker and counters (guarded by the registry's lock)."""

    def __init__(self, stage: StageType, route: Route) -> None:
        self.stage = stage
        self.provider = route.provider_kind
        self.fingerprint = route.api_key_fingerprint
        self.index = 0
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.openings = 0
        self.open_until = 0.0
        self.trial = False
        self.last_failure: RouteFailure | None = None
        self.succeeded = self.failed = self.failovers = self.opened = 0

    @property
    def label(self) -> str:
        return f"{self.stage} {route_label(self.index, self.provider)}"


@dataclass(frozen=True, slots=True)
class Skip:
    """A route not called because its breaker is open (or its trial is in flight)."""

    failure: RouteFailure | None
    """The failure that opened it."""
    retry_in: float
    """Seconds until it is tried again (0: its half-open trial is in flight)."""


class BreakerRegistry:
    """Every route breaker of this process, thread-safe; one per process by default
    (``default_registry``), read by the ConfigClient's status reports."""

    def __init__(self) -> None:
        self._clock = time.monotonic
        self._lock = threading.Lock()
        self._breakers: dict[RouteKey, _Breaker] = {}

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock and no breakers (the parent keeps its own)."""
        self._lock = threading.Lock()
        self._breakers = {}

    def _get(self, stage: StageType, route: Route) -> _Breaker:
        key = route_key(stage, route)
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = _Breaker(stage, route)
        breaker.index = route.index
        breaker.fingerprint = route.api_key_fingerprint
        return breaker

    def admit(self, stage: StageType, route: Route) -> Skip | None:
        """None: call the route now. A Skip: its breaker is open — do not call it."""
        now = self._clock()
        with self._lock:
            breaker = self._get(stage, route)
            if breaker.state is BreakerState.CLOSED:
                return None
            if breaker.state is BreakerState.OPEN and now >= breaker.open_until:
                breaker.state = BreakerState.HALF_OPEN
                breaker.trial = False
                log.info("%s: cooldown over, trying the route once (half-open)", breaker.label)
            if breaker.state is BreakerState.HALF_OPEN and not breaker.trial:
                breaker.trial = True
                return None
            return Skip(breaker.last_failure, max(0.0, breaker.open_until - now))

    def succeeded(self, stage: StageType, route: Route) -> None:
        """The route answered: count it and close its breaker."""
        with self._lock:
            breaker = self._get(stage, route)
            breaker.succeeded += 1
            self._close(breaker)

    def release(self, stage: StageType, route: Route) -> None:
        """The call ended in an error that is not the route's (not counted): a half-open
        trial it was is over, and the next call tries again."""
        with self._lock:
            self._get(stage, route).trial = False

    def _close(self, breaker: _Breaker) -> None:
        if breaker.state is not BreakerState.CLOSED:
            log.info("%s answers again: breaker closed", breaker.label)
        breaker.state = BreakerState.CLOSED
        breaker.failures = breaker.openings = 0
        breaker.trial = False

    def failed(
        self,
        stage: StageType,
        route: Route,
        failure: RouteFailure,
        settings: BreakerSettings,
    ) -> None:
        """The route failed a call: count it; open the breaker at the threshold, on a
        failed trial, or when the provider named a ``Retry-After``."""
        now = self._clock()
        with self._lock:
            breaker = self._get(stage, route)
            breaker.failed += 1
            breaker.failures += 1
            breaker.last_failure = failure
            trial_failed = breaker.state is BreakerState.HALF_OPEN
            breaker.trial = False
            if breaker.state is BreakerState.OPEN:
                return  # a call admitted before it opened: it stays open as it is
            if not (
                trial_failed
                or breaker.failures >= settings.failure_threshold
                or failure.retry_after is not None
            ):
                return
            breaker.openings += 1
            breaker.opened += 1
            cooldown = (
                failure.retry_after
                if failure.retry_after is not None
                else settings.cooldown(breaker.openings)
            )
            breaker.state = BreakerState.OPEN
            breaker.open_until = now + cooldown
        log.warning(
            "%s failing (%s): breaker open, the route is skipped for %g s",
            breaker.label,
            failure,
            cooldown,
        )

    def failed_over(self, stage: StageType, route: Route) -> None:
        """A call moved on from this route (it failed or was skipped) to the next one."""
        with self._lock:
            self._get(stage, route).failovers += 1

    def state(self, stage: StageType, route: Route) -> BreakerState:
        """The route's breaker state now (CLOSED for a route never called)."""
        with self._lock:
            breaker = self._breakers.get(route_key(stage, route))
            return breaker.state if breaker is not None else BreakerState.CLOSED

    def drain(self, stage: StageType, routes: tuple[Route, ...]) -> list[RouteCounts]:
        """The breakers of ``stage``'s current ``routes`` this process has used, with
        their counts since the previous drain (reset now). Breakers of routes no longer
        in the list are forgotten."""
        keys = {route_key(stage, r): r.index for r in routes[:MAX_ROUTES_REPORTED]}
        taken: list[RouteCounts] = []
        with self._lock:
            for stale in [k for k in self._breakers if k[0] is stage and k not in keys]:
                del self._breakers[stale]
            for key, index in keys.items():
                breaker = self._breakers.get(key)
                if breaker is None:
                    continue
                cause = breaker.last_failure.cause if breaker.last_failure else None
                taken.append(
                    RouteCounts(
                        route_index=index,
                        provider_kind=breaker.provider,
                        api_key_fingerprint=breaker.fingerprint,
                        breaker_state=breaker.state,
                        succeeded=breaker.succeeded,
                        failed=breaker.failed,
                        failovers=breaker.failovers,
                        breaker_opened=breaker.opened,
                        last_failure_cause=cause or StatusCause.UNSPECIFIED,
                    )
                )
                breaker.succeeded = breaker.failed = breaker.failovers = breaker.opened = 0
        return taken


_default = BreakerRegistry()


def default_registry() -> BreakerRegistry:
    """This process's breakers (what ``run_with_fallback`` uses unless told otherwise,
    and what the ConfigClient reports)."""
    return _default


os.register_at_fork(after_in_child=_default.reset_after_fork)
