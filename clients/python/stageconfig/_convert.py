"""Proto ↔ client types, in one place.

A newer server may send enum values this client does not know. Statuses, causes,
reasons and sources become their UNSPECIFIED member; a config whose stage or provider
kind is unknown cannot be represented at all and raises ``UnrepresentableConfig``, which
the watcher turns into "keep this stage's last config, warn once" — never a broken
stream. A *fallback route* with an unknown provider kind is dropped (one warning per
stage and kind): the primary and the other routes still serve.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from stageconfig._types import (
    ChangeReason,
    ConfigSource,
    ConfigStatus,
    ProtoEnum,
    ProviderKind,
    Route,
    StageConfig,
    StageType,
    StatusCause,
)
from stageconfig_contract.v1 import stage_config_pb2 as pb

E = TypeVar("E", bound=ProtoEnum)

log = logging.getLogger("stageconfig.client")
_warned_routes: set[tuple[StageType, int]] = set()
_warned_lock = threading.Lock()


class UnrepresentableConfig(ValueError):
    """A config carries a stage or provider kind this client version does not know.

    ``stage`` is the stage it belongs to when that much is known (None when the stage
    itself is the unknown value); ``field`` and ``value`` name what could not be read.
    """

    def __init__(self, stage: StageType | None, field: str, value: int, revision: int) -> None:
        self.stage = stage
        self.field = field
        self.value = value
        self.revision = revision
        where = f"the {stage} config" if stage is not None else "a config"
        super().__init__(
            f"{where} at revision {revision} has {field}={value}, a value this client "
            "does not know (the server is newer: upgrade the client)"
        )


def _known_or_unspecified(enum_type: type[E], value: int) -> E:
    member = enum_type.from_number(value)
    return member if member is not None else enum_type("UNSPECIFIED")


def stage_to_pb(stage: StageType | str) -> pb.StageType.ValueType:
    """Proto value of a stage (accepts the enum or its name)."""
    return pb.StageType.ValueType(StageType(stage).number)


def provider_to_pb(provider: ProviderKind | str) -> pb.ProviderKind.ValueType:
    """Proto value of a provider kind (accepts the enum or its name)."""
    return pb.ProviderKind.ValueType(ProviderKind(provider).number)


def stage_from_pb(value: int) -> StageType | None:
    """Client enum of a proto stage; None for UNSPECIFIED or a stage this client does not
    know."""
    return StageType.from_number(value)


def provider_from_pb(value: int) -> ProviderKind | None:
    """Client enum of a proto provider kind; None for UNSPECIFIED or one this client does
    not know."""
    return ProviderKind.from_number(value)


def status_from_pb(value: int) -> ConfigStatus:
    """Client enum of a proto status (UNSPECIFIED for an unknown one)."""
    return _known_or_unspecified(ConfigStatus, value)


def cause_from_pb(value: int) -> StatusCause:
    """Client enum of a proto status cause (UNSPECIFIED for an unknown one)."""
    return _known_or_unspecified(StatusCause, value)


def source_from_pb(value: int) -> ConfigSource:
    """Client enum of a proto config source (UNSPECIFIED for an unknown one)."""
    return _known_or_unspecified(ConfigSource, value)


def reason_from_pb(value: int) -> ChangeReason:
    """Client enum of a proto change reason (UNSPECIFIED for an unknown one)."""
    return _known_or_unspecified(ChangeReason, value)


def time_from_pb(ts: Timestamp, present: bool) -> datetime | None:
    """An aware datetime, or None when the field is unset."""
    return ts.ToDatetime(tzinfo=UTC) if present else None


def config_from_pb(message: pb.StageConfig) -> StageConfig:
    """A frozen StageConfig from its message (a configured stage: provider set).

    Raises UnrepresentableConfig when the stage or the provider kind is one this client
    does not know.
    """
    stage = stage_from_pb(message.stage_type)
    if stage is None:
        raise UnrepresentableConfig(None, "stage_type", message.stage_type, message.revision)
    provider = provider_from_pb(message.provider_kind)
    if provider is None:
        raise UnrepresentableConfig(stage, "provider_kind", message.provider_kind, message.revision)
    return StageConfig(
        stage_type=stage,
        provider_kind=provider,
        api_key=message.api_key,
        model=message.model,
        revision=message.revision,
        status=status_from_pb(message.status),
        source=source_from_pb(message.source),
        options=MappingProxyType(dict(message.options)),
        status_reason=message.status_reason,
        status_cause=cause_from_pb(message.status_cause),
        api_key_masked=message.api_key_masked,
        api_key_fingerprint=message.api_key_fingerprint,
        updated_at=time_from_pb(message.updated_at, message.HasField("updated_at")),
        models_cache_updated_at=time_from_pb(
            message.models_cache_updated_at, message.HasField("models_cache_updated_at")
        ),
        fallbacks=_fallbacks_from_pb(stage, message),
    )


def route_from_pb(message: pb.Route, index: int) -> Route | None:
    """A Route from its message (``index``: 1 for ``fallbacks[0]``); None when its
    provider kind is one this client does not know."""
    provider = provider_from_pb(message.provider_kind)
    if provider is None:
        return None
    return Route(
        provider_kind=provider,
        api_key=message.api_key,
        model=message.model,
        options=MappingProxyType(dict(message.options)),
        status=status_from_pb(message.status),
        status_reason=message.status_reason,
        status_cause=cause_from_pb(message.status_cause),
        api_key_masked=message.api_key_masked,
        api_key_fingerprint=message.api_key_fingerprint,
        index=index,
    )


def _fallbacks_from_pb(stage: StageType, message: pb.StageConfig) -> tuple[Route, ...]:
    routes: list[Route] = []
    for position, route_message in enumerate(message.fallbacks):
        route = route_from_pb(route_message, position + 1)
        if route is not None:
            routes.append(route)
            continue
        with _warned_lock:
            first = (stage, route_message.provider_kind) not in _warned_routes
            _warned_routes.add((stage, route_message.provider_kind))
        if first:
            log.warning(
                "the %s config at revision %d has fallbacks[%d] with provider_kind=%d, a "
                "value this client does not know: that route is skipped (upgrade the "
                "client)",
                stage,
                message.revision,
                position,
                route_message.provider_kind,
            )
    return tuple(routes)
