"""Fallback routes as admins see and set them (issue 16), re-exported by
``stageconfig.admin``.

``RouteSpec`` is one route an admin sets (``AdminClient.update_config(fallbacks=...)``);
``RouteView`` a stored route with its key masked (``StageView.routes``,
``UpdateResult.routes``); ``RouteHealth`` one route across the fleet
(``StageFleetStatus.routes``) and ``RouteReport`` one route in one worker
(``StageReport.routes``). ``route_health_line`` says in one line how a stage's routes
fare: ``POEM: primary GEMINI failing (QUOTA) on 12/12 workers, serving from OPENAI``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from stageconfig._convert import cause_from_pb, provider_from_pb, provider_to_pb, status_from_pb
from stageconfig._types import BreakerState, ConfigStatus, ProviderKind, StatusCause
from stageconfig_contract.facts import mask_key
from stageconfig_contract.v1 import stage_config_pb2 as pb


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One fallback route to set. ``api_key`` None keeps the key of the stored route at
    the same position (same provider) or, with ``api_key_fingerprint``, the stored
    route's key with that fingerprint (reordering a key pool); ``model`` None keeps the
    stored route's model when still offered, else the first; empty ``options`` keep the
    stored route's. ``repr`` never shows the key."""

    provider: ProviderKind | str
    api_key: str | None = field(default=None, repr=False)
    model: str | None = None
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    api_key_fingerprint: str = ""

    def to_pb(self) -> pb.RouteUpdate:
        """The RouteUpdate message."""
        route = pb.RouteUpdate(
            provider_kind=provider_to_pb(self.provider),
            options=dict(self.options),
            api_key_fingerprint=self.api_key_fingerprint,
        )
        if self.api_key is not None:
            route.api_key = self.api_key
        if self.model is not None:
            route.model = self.model
        return route


@dataclass(frozen=True, slots=True)
class RouteView:
    """A stored fallback route, key masked."""

    provider_kind: ProviderKind | None
    """None for a provider kind this client does not know (``unknown_provider_kind``)."""
    api_key: str
    """Masked (``sk-…a1b2``)."""
    api_key_fingerprint: str
    model: str
    options: Mapping[str, str]
    status: ConfigStatus
    status_reason: str = ""
    status_cause: StatusCause = StatusCause.UNSPECIFIED
    unknown_provider_kind: int = 0

    @property
    def provider(self) -> str:
        """The provider's name, ``UNKNOWN(n)`` for one this client does not know."""
        if self.provider_kind is not None:
            return self.provider_kind.value
        return f"UNKNOWN({self.unknown_provider_kind})"


@dataclass(frozen=True, slots=True)
class RouteHealth:
    """One route of a stage across the reporting fleet (GetFleetStatus)."""

    route_index: int
    """0 is the primary, i is fallbacks[i-1]."""
    provider_kind: ProviderKind | None
    api_key_fingerprint: str
    clients: int
    """Reporting clients that hold this route."""
    clients_open: int
    """Of those, the clients whose breaker of the route is open."""
    succeeded: int
    failed: int
    failovers: int
    """Calls that moved on from this route to the next."""
    failure_cause: StatusCause
    """The most frequent newest failure cause (UNSPECIFIED: none)."""

    @property
    def provider(self) -> str:
        """The provider's name (``UNKNOWN`` for one this client does not know)."""
        return self.provider_kind.value if self.provider_kind is not None else "UNKNOWN"


@dataclass(frozen=True, slots=True)
class RouteReport:
    """One route of a stage in one worker process, counts since it began reporting it."""

    route_index: int
    provider_kind: ProviderKind | None
    api_key_fingerprint: str
    breaker_state: BreakerState
    succeeded: int = 0
    failed: int = 0
    failovers: int = 0
    breaker_opened: int = 0
    last_failure_cause: StatusCause = StatusCause.UNSPECIFIED


def parse_route_spec(text: str) -> RouteSpec:
    """A route written ``PROVIDER[:MODEL][@FINGERPRINT][,NAME=VALUE…]`` (as
    ``stageconfigctl set --fallback`` and the web form take it), without a key;
    ValueError names what is wrong. The model may contain ``:`` (``jane:good``)."""
    head, *pairs = text.strip().split(",")
    options = {}
    for pair in pairs:
        name, sep, value = pair.strip().partition("=")
        if not sep or not name:
            raise ValueError(f"options want NAME=VALUE, got {pair!r} in {text!r}")
        options[name] = value
    head, _, fingerprint = head.partition("@")
    provider_text, sep, model = head.strip().partition(":")
    try:
        provider = ProviderKind(provider_text.upper().replace("-", "_"))
    except ValueError:
        names = ", ".join(p.value for p in ProviderKind)
        raise ValueError(f"unknown provider {provider_text!r} (one of {names})") from None
    if sep and not model:
        raise ValueError(f"{text!r}: empty model after ':'")
    return RouteSpec(provider, None, model or None, options, fingerprint.strip())


def route_spec_text(route: RouteView) -> str:
    """``parse_route_spec``'s form of a stored route, naming its key by fingerprint (so
    the route keeps its key wherever it moves in the list)."""
    text = f"{route.provider}:{route.model}"
    if route.api_key_fingerprint:
        text += f"@{route.api_key_fingerprint}"
    return text + "".join(f",{k}={v}" for k, v in sorted(route.options.items()))


def route_view_from_pb(message: pb.Route) -> RouteView:
    """A stored route, its key masked even when a server without tokens sent plaintext."""
    provider = provider_from_pb(message.provider_kind)
    key = message.api_key if message.api_key_masked or not message.api_key else None
    return RouteView(
        provider_kind=provider,
        api_key=key if key is not None else mask_key(message.api_key),
        api_key_fingerprint=message.api_key_fingerprint,
        model=message.model,
        options=MappingProxyType(dict(message.options)),
        status=status_from_pb(message.status),
        status_reason=message.status_reason,
        status_cause=cause_from_pb(message.status_cause),
        unknown_provider_kind=message.provider_kind if provider is None else 0,
    )


def route_views(messages: Iterable[pb.Route]) -> tuple[RouteView, ...]:
    """Every stored route of a config, in order."""
    return tuple(map(route_view_from_pb, messages))


def route_health_from_pb(message: pb.RouteFleetStatus) -> RouteHealth:
    """One route across the fleet."""
    return RouteHealth(
        route_index=message.route_index,
        provider_kind=provider_from_pb(message.provider_kind),
        api_key_fingerprint=message.api_key_fingerprint,
        clients=message.clients,
        clients_open=message.clients_open,
        succeeded=message.succeeded,
        failed=message.failed,
        failovers=message.failovers,
        failure_cause=cause_from_pb(message.failure_cause),
    )


def route_report_from_pb(message: pb.RouteReport) -> RouteReport:
    """One route in one worker."""
    return RouteReport(
        route_index=message.route_index,
        provider_kind=provider_from_pb(message.provider_kind),
        api_key_fingerprint=message.api_key_fingerprint,
        breaker_state=BreakerState.from_number(message.breaker_state) or BreakerState.UNSPECIFIED,
        succeeded=message.succeeded,
        failed=message.failed,
        failovers=message.failovers,
        breaker_opened=message.breaker_opened,
        last_failure_cause=cause_from_pb(message.last_failure_cause),
    )


def route_health_line(stage: str, routes: Sequence[RouteHealth]) -> str:
    """How a stage's routes fare, in one line ("" when no worker reported routes):
    ``POEM: primary GEMINI failing (QUOTA) on 12/12 workers, serving from OPENAI``."""
    if not routes:
        return ""
    primary = next((r for r in routes if r.route_index == 0), None)
    fallbacks = sorted((r for r in routes if r.route_index > 0), key=lambda r: r.route_index)
    failing = [r for r in routes if r.clients_open]
    if primary is None or not primary.clients_open:
        if not failing:
            return f"{stage}: all {len(routes)} routes healthy"
        worst = failing[0]
        return (
            f"{stage}: primary healthy; {_name(worst, primary)} failing{_cause(worst)} "
            f"on {worst.clients_open}/{worst.clients} workers"
        )
    line = (
        f"{stage}: primary {primary.provider} failing{_cause(primary)} "
        f"on {primary.clients_open}/{primary.clients} workers"
    )
    serving = next((r for r in fallbacks if r.clients_open < r.clients), None)
    if serving is None:
        return line + (", no fallback route left" if fallbacks else ", no fallback route")
    return f"{line}, serving from {_name(serving, primary)}"


def _cause(route: RouteHealth) -> str:
    cause = route.failure_cause
    return f" ({cause.value})" if cause is not StatusCause.UNSPECIFIED else ""


def _name(route: RouteHealth, primary: RouteHealth | None) -> str:
    """A fallback's name: its provider, with its key's fingerprint in a key pool."""
    if primary is not None and route.provider_kind is primary.provider_kind:
        return f"{route.provider} key {route.api_key_fingerprint or '?'}"
    return route.provider
