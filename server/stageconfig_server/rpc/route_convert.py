"""Fallback routes, proto ↔ domain (issue 16): RouteUpdate in, Route out.

A route's key leaves as plaintext only for the worker role, like the primary's.
"""

from __future__ import annotations

from collections.abc import Sequence

from stageconfig_contract.facts import mask_key
from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_server.domain import ConfigStatus, ProviderKind, Route, StatusCause
from stageconfig_server.errors import InvalidArgument
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
            status_cause=(
                _CAUSE_TO_PB[route.status_cause]
                if route.status_cause
                else pb.STATUS_CAUSE_UNSPECIFIED
            ),
            api_key_fingerprint=route.api_key_fingerprint,
        )
        for route in routes
    ]
