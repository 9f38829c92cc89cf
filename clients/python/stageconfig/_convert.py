"""Proto → client types, in one place."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

from google.protobuf.timestamp_pb2 import Timestamp

from stageconfig._types import (
    ChangeReason,
    ConfigSource,
    ConfigStatus,
    ProviderKind,
    StageConfig,
    StageType,
)
from stageconfig.v1 import stage_config_pb2 as pb


def _enum_name(enum_type: object, prefix: str, value: int) -> str:
    try:
        name: str = enum_type.Name(value)  # type: ignore[attr-defined]
    except ValueError:
        return "UNSPECIFIED"
    return name.removeprefix(prefix)


def stage_to_pb(stage: StageType | str) -> int:
    """Proto value of a stage (accepts the enum or its name)."""
    return int(pb.StageType.Value(f"STAGE_TYPE_{StageType(stage).value}"))


def provider_to_pb(provider: ProviderKind | str) -> int:
    """Proto value of a provider kind (accepts the enum or its name)."""
    return int(pb.ProviderKind.Value(f"PROVIDER_KIND_{ProviderKind(provider).value}"))


def stage_from_pb(value: int) -> StageType:
    """Client enum of a proto stage."""
    return StageType(_enum_name(pb.StageType, "STAGE_TYPE_", value))


def provider_from_pb(value: int) -> ProviderKind:
    """Client enum of a proto provider kind."""
    return ProviderKind(_enum_name(pb.ProviderKind, "PROVIDER_KIND_", value))


def status_from_pb(value: int) -> ConfigStatus:
    """Client enum of a proto status."""
    return ConfigStatus(_enum_name(pb.ConfigStatus, "CONFIG_STATUS_", value))


def reason_from_pb(value: int) -> ChangeReason:
    """Client enum of a proto change reason."""
    return ChangeReason(_enum_name(pb.ChangeReason, "CHANGE_REASON_", value))


def time_from_pb(ts: Timestamp, present: bool) -> datetime | None:
    """An aware datetime, or None when the field is unset."""
    return ts.ToDatetime(tzinfo=UTC) if present else None


def config_from_pb(message: pb.StageConfig) -> StageConfig:
    """A frozen StageConfig from its message (a configured stage: provider set)."""
    return StageConfig(
        stage_type=stage_from_pb(message.stage_type),
        provider_kind=provider_from_pb(message.provider_kind),
        api_key=message.api_key,
        model=message.model,
        revision=message.revision,
        status=status_from_pb(message.status),
        source=ConfigSource(_enum_name(pb.ConfigSource, "CONFIG_SOURCE_", message.source)),
        options=MappingProxyType(dict(message.options)),
        status_reason=message.status_reason,
        api_key_masked=message.api_key_masked,
        api_key_fingerprint=message.api_key_fingerprint,
        updated_at=time_from_pb(message.updated_at, message.HasField("updated_at")),
        models_cache_updated_at=time_from_pb(
            message.models_cache_updated_at, message.HasField("models_cache_updated_at")
        ),
    )
