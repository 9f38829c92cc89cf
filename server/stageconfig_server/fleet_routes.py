"""Fleet truth about fallback routes (issue 16): each worker's routes as it reports them
(``RouteHealth``), their checks, how one client's reports add up, and the fleet view
per stage and route (``RouteStatus``). No gRPC, no SQL.

A route's counts in a client's stored state are totals since that process started
reporting the route (a report's counts are added to the stored ones while the process
— host and pid — and the route — index, provider, key fingerprint — stay the same).
The fleet view sums them over the clients that still report, next to how many of those
have the route's breaker open and the most frequent newest failure cause.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from stageconfig_server.domain import MAX_FALLBACKS, BreakerState, ProviderKind, StatusCause
from stageconfig_server.errors import InvalidArgument

MAX_ROUTES = MAX_FALLBACKS + 1
"""Routes per stage in a report: the primary and at most ``MAX_FALLBACKS`` fallbacks."""
_FINGERPRINT = re.compile(r"^[0-9a-f]{0,16}$")
_COUNTS = ("succeeded", "failed", "failovers", "breaker_opened")


@dataclass(frozen=True, slots=True)
class RouteHealth:
    """One route of a stage in one worker process (None: a value this server does not
    know, tolerated so a newer worker is not refused)."""

    route_index: int
    provider_kind: ProviderKind | None = None
    api_key_fingerprint: str = ""
    breaker_state: BreakerState | None = None
    succeeded: int = 0
    failed: int = 0
    failovers: int = 0
    breaker_opened: int = 0
    last_failure_cause: StatusCause | None = None

    def same_route(self, other: RouteHealth) -> bool:
        """Whether both describe the same route (index, provider, key)."""
        return (self.route_index, self.provider_kind, self.api_key_fingerprint) == (
            other.route_index,
            other.provider_kind,
            other.api_key_fingerprint,
        )


@dataclass(frozen=True, slots=True)
class RouteStatus:
    """One route of a stage across the reporting fleet."""

    route_index: int
    provider_kind: ProviderKind | None
    api_key_fingerprint: str
    clients: int
    clients_open: int
    succeeded: int
    failed: int
    failovers: int
    failure_cause: StatusCause | None


def check_routes(where: str, routes: Sequence[RouteHealth], check_count: Any) -> None:
    """InvalidArgument naming ``{where}.routes[j].field`` unless the routes are sane:
    at most ``MAX_ROUTES``, each index 0…8 once, a fingerprint of ≤ 16 hex digits,
    counts checked by ``check_count(field, value)``."""
    if len(routes) > MAX_ROUTES:
        raise InvalidArgument(f"{where}.routes", f"at most {MAX_ROUTES} routes")
    seen: set[int] = set()
    for j, route in enumerate(routes):
        at = f"{where}.routes[{j}]"
        if not 0 <= route.route_index < MAX_ROUTES:
            raise InvalidArgument(f"{at}.route_index", f"must be 0…{MAX_ROUTES - 1}")
        if route.route_index in seen:
            raise InvalidArgument(f"{at}.route_index", "each route may appear only once")
        seen.add(route.route_index)
        if not _FINGERPRINT.match(route.api_key_fingerprint):
            raise InvalidArgument(
                f"{at}.api_key_fingerprint", "must be at most 16 lowercase hex digits"
            )
        for name in _COUNTS:
            check_count(f"{at}.{name}", getattr(route, name))


def accumulate(
    previous: Sequence[RouteHealth], reported: Sequence[RouteHealth]
) -> tuple[RouteHealth, ...]:
    """A process's new route states: each reported route with its counts added to the
    stored ones of the same route (a route it no longer reports is dropped)."""
    merged = []
    for route in reported:
        before = next((p for p in previous if p.same_route(route)), None)
        if before is not None:
            route = replace(
                route, **{name: getattr(before, name) + getattr(route, name) for name in _COUNTS}
            )
        merged.append(route)
    return tuple(merged)


def route_statuses(routes_per_client: Iterable[Sequence[RouteHealth]]) -> tuple[RouteStatus, ...]:
    """The fleet view of one stage's routes from each live client's routes, by index
    (and provider and key, when clients hold different routes at one index)."""
    groups: dict[tuple[int, ProviderKind | None, str], list[RouteHealth]] = {}
    for routes in routes_per_client:
        for route in routes:
            key = (route.route_index, route.provider_kind, route.api_key_fingerprint)
            groups.setdefault(key, []).append(route)
    statuses = []
    for (index, provider, fp), members in sorted(groups.items(), key=_order):
        causes = Counter(r.last_failure_cause for r in members if r.last_failure_cause)
        statuses.append(
            RouteStatus(
                route_index=index,
                provider_kind=provider,
                api_key_fingerprint=fp,
                clients=len(members),
                clients_open=sum(1 for r in members if r.breaker_state is BreakerState.OPEN),
                succeeded=sum(r.succeeded for r in members),
                failed=sum(r.failed for r in members),
                failovers=sum(r.failovers for r in members),
                failure_cause=(
                    min(causes.items(), key=lambda item: (-item[1], item[0].value))[0]
                    if causes
                    else None
                ),
            )
        )
    return tuple(statuses)


def _order(item: tuple[tuple[int, ProviderKind | None, str], list[RouteHealth]]) -> tuple[Any, ...]:
    (index, provider, fp), members = item
    return (index, -len(members), provider.value if provider else "", fp)


def route_to_json(route: RouteHealth) -> dict[str, Any]:
    """A route as stored in the fleet client's stages JSON."""
    return {
        "route_index": route.route_index,
        "provider_kind": route.provider_kind.value if route.provider_kind else None,
        "api_key_fingerprint": route.api_key_fingerprint,
        "breaker_state": route.breaker_state.value if route.breaker_state else None,
        **{name: getattr(route, name) for name in _COUNTS},
        "last_failure_cause": route.last_failure_cause.value if route.last_failure_cause else None,
    }


def route_from_json(value: Mapping[str, Any]) -> RouteHealth:
    """``route_to_json``'s inverse."""
    provider, breaker, cause = (
        value.get("provider_kind"),
        value.get("breaker_state"),
        value.get("last_failure_cause"),
    )
    return RouteHealth(
        route_index=int(value["route_index"]),
        provider_kind=ProviderKind(provider) if provider else None,
        api_key_fingerprint=str(value.get("api_key_fingerprint") or ""),
        breaker_state=BreakerState(breaker) if breaker else None,
        last_failure_cause=StatusCause(cause) if cause else None,
        **{name: int(value.get(name) or 0) for name in _COUNTS},
    )
