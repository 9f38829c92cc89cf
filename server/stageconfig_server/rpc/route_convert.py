"""Fallback routes, proto ↔ domain (issue 16): RouteUpdate in, Route out; a worker's
RouteReport in and out, the fleet's RouteFleetStatus out.

A route's key leaves as plaintext only for the worker role, like the primary's.
"""

from __future__ import annotations

from collections.abc import Sequence

from stageconfig_contract.facts import mask_key
from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_server.domain import BreakerState, ConfigStatus, ProviderKind, Route, StatusCause
from stageconfig_server.errors import InvalidArgument
from stageconfig_server.fleet_routes import RouteHealth, RouteStatus
from stageconfig_server.route_updates import RouteRequest

_PROVIDER_TO_PB = {p: pb.ProviderKind.Value(f"PROVIDER_KIND_{p.value}") for p in ProviderKind}
_PB_TO_PROVIDER = {v: k for k, v in _PROVIDER_TO_PB.items()}
_STATUS_TO_PB = {s: pb.ConfigStatus.Value(f"CONFIG_STATUS_{s.value}") for s in ConfigStatus}
_CAUSE_TO_PB = {c: pb.StatusCause.Value(f"STATUS_CAUSE_{c.value}") for c in StatusCause}


def routes_from_pb(request: pb.UpdateConfigRequest) -> tuple[RouteRequest, ...] | None:
    """The request's fallback list: None keeps the stored one (an empty list from a
    client that knows nothing of fallbacks must never wipe them), () clears it
    (``clear_fallbacks``)."""
    if not request.fallbacks:
        return () if request.clear_fallbacks else None
    if request.clear_fallbacks:
        raise InvalidArgument("clear_fallbacks", "must not be set together with fallbacks")
    return tuple(_route_from_pb(index, route) for index, route in enumerate(request.fallbacks))


def _route_from_pb(index: int, route: pb.RouteUpdate) -> RouteRequest:
    provider = _PB_TO_PROVIDER.get(route.provider_kind)
    if provider is None:
        what = "is required" if route.provider_kind == 0 else "has an unknown value"
        raise InvalidArgument(f"fallbacks[{index}].provider_kind", what)
    return RouteRequest(
        provider_kind=provider,
        api_key=route.api_key if route.HasField("api_key") else None,
        model=route.model if route.HasField("model") else None,
        options=dict(route.options) or None,
        api_key_fingerprint=route.api_key_fingerprint,
    )


def routes_to_pb(routes: Sequence[Route], *, reveal_key: bool) -> list[pb.Route]:
    """The routes of a StageConfig message; keys plaintext only when ``reveal_key``."""
    return [
        pb.Route(
            provider_kind=_PROVIDER_TO_PB[route.provider_kind],
            api_key=route.api_key if reveal_key else mask_key(route.api_key),
            api_key_masked=not reveal_key,
            model=route.model,
            options=dict(route.options),
            status=_STATUS_TO_PB[route.status],
            status_reason=route.status_reason,
            status_cause=_cause(route.status_cause),
            api_key_fingerprint=route.api_key_fingerprint,
        )
        for route in routes
    ]


_BREAKER_TO_PB = {b: pb.BreakerState.Value(f"BREAKER_STATE_{b.value}") for b in BreakerState}
_PB_TO_BREAKER = {v: k for k, v in _BREAKER_TO_PB.items()}
_PB_TO_CAUSE = {v: k for k, v in _CAUSE_TO_PB.items()}


def route_health_from_pb(route: pb.RouteReport) -> RouteHealth:
    """A RouteReport in domain terms; an enum value this server does not know becomes
    None (a newer worker is not refused for it)."""
    return RouteHealth(
        route_index=route.route_index,
        provider_kind=_PB_TO_PROVIDER.get(route.provider_kind),
        api_key_fingerprint=route.api_key_fingerprint,
        breaker_state=_PB_TO_BREAKER.get(route.breaker_state),
        succeeded=route.succeeded,
        failed=route.failed,
        failovers=route.failovers,
        breaker_opened=route.breaker_opened,
        last_failure_cause=_PB_TO_CAUSE.get(route.last_failure_cause),
    )


def route_health_to_pb(route: RouteHealth) -> pb.RouteReport:
    """A client's route as stored (counts since its process started reporting it)."""
    return pb.RouteReport(
        route_index=route.route_index,
        provider_kind=_provider(route.provider_kind),
        api_key_fingerprint=route.api_key_fingerprint,
        breaker_state=(
            _BREAKER_TO_PB[route.breaker_state]
            if route.breaker_state
            else pb.BREAKER_STATE_UNSPECIFIED
        ),
        succeeded=route.succeeded,
        failed=route.failed,
        failovers=route.failovers,
        breaker_opened=route.breaker_opened,
        last_failure_cause=_cause(route.last_failure_cause),
    )


def route_status_to_pb(status: RouteStatus) -> pb.RouteFleetStatus:
    """One route of a stage across the fleet."""
    return pb.RouteFleetStatus(
        route_index=status.route_index,
        provider_kind=_provider(status.provider_kind),
        api_key_fingerprint=status.api_key_fingerprint,
        clients=status.clients,
        clients_open=status.clients_open,
        succeeded=status.succeeded,
        failed=status.failed,
        failovers=status.failovers,
        failure_cause=_cause(status.failure_cause),
    )


def _provider(provider: ProviderKind | None) -> pb.ProviderKind.ValueType:
    return _PROVIDER_TO_PB[provider] if provider else pb.PROVIDER_KIND_UNSPECIFIED


def _cause(cause: StatusCause | None) -> pb.StatusCause.ValueType:
    return _CAUSE_TO_PB[cause] if cause else pb.STATUS_CAUSE_UNSPECIFIED
