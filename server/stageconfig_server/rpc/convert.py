"""Proto ↔ domain, in one place. Proto types stop here; the service sees domain types.

An unspecified or unknown enum value becomes InvalidArgument naming the field.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from stageconfig_contract.facts import mask_key
from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_server.domain import (
    ChangeReason,
    ConfigSource,
    ConfigStatus,
    HistoryEntry,
    ProviderKind,
    StageConfig,
    StageType,
    StatusCause,
)
from stageconfig_server.errors import InvalidArgument
from stageconfig_server.refresh import RefreshOutcome
from stageconfig_server.rpc.route_convert import routes_from_pb, routes_to_pb
from stageconfig_server.updates import UpdateRequest
from stageconfig_server.view import ModelsView, StageView

E = TypeVar("E")

_STAGE_TO_PB = {s: pb.StageType.Value(f"STAGE_TYPE_{s.value}") for s in StageType}
_PB_TO_STAGE: dict[int, StageType] = {v: k for k, v in _STAGE_TO_PB.items()}
_PROVIDER_TO_PB = {p: pb.ProviderKind.Value(f"PROVIDER_KIND_{p.value}") for p in ProviderKind}
_PB_TO_PROVIDER: dict[int, ProviderKind] = {v: k for k, v in _PROVIDER_TO_PB.items()}
_STATUS_TO_PB = {s: pb.ConfigStatus.Value(f"CONFIG_STATUS_{s.value}") for s in ConfigStatus}
_CAUSE_TO_PB = {c: pb.StatusCause.Value(f"STATUS_CAUSE_{c.value}") for c in StatusCause}
_SOURCE_TO_PB = {s: pb.ConfigSource.Value(f"CONFIG_SOURCE_{s.value}") for s in ConfigSource}
_REASON_TO_PB = {r: pb.ChangeReason.Value(f"CHANGE_REASON_{r.value}") for r in ChangeReason}


def _required(decoded: Mapping[int, E], names: Callable[[Any], str], value: int, field: str) -> E:
    """A required enum value; UNSPECIFIED or unknown → InvalidArgument on ``field``."""
    member = decoded.get(value)
    if member is None:
        allowed = ", ".join(names(number) for number in decoded)
        what = "is required" if value == 0 else f"has unknown value {value}"
        raise InvalidArgument(field, f"{what}; one of {allowed}")
    return member


def stage_from_pb(value: int, field: str = "stage_type") -> StageType:
    """A required stage; UNSPECIFIED or unknown → InvalidArgument on ``field``."""
    return _required(_PB_TO_STAGE, pb.StageType.Name, value, field)


def optional_stage_from_pb(value: int, field: str = "stage_type") -> StageType | None:
    """A stage where UNSPECIFIED means 'all'."""
    return None if value == 0 else stage_from_pb(value, field)


def provider_from_pb(value: int, field: str = "provider_kind") -> ProviderKind:
    """A required provider kind; UNSPECIFIED or unknown → InvalidArgument on ``field``."""
    return _required(_PB_TO_PROVIDER, pb.ProviderKind.Name, value, field)


MAX_CLIENT_ID_LENGTH = 128
"""client_id: at most this many printable characters. Refused (not sanitized) beyond:
the id is what an operator greps for in ListWatchers and the fleet view, so silently
rewriting it would make a worker unfindable; a client sending control characters or a
novel is broken or hostile and should hear so at once."""
MAX_CLIENT_VERSION_LENGTH = 64


@dataclass(frozen=True, slots=True)
class WatchRequest:
    """A WatchConfig call in domain terms, checked."""

    stages: list[StageType]
    resume_revision: int | None
    client_id: str  # "" when the client sent none (the transport uses its peer)
    client_version: str = ""  # "" from clients older than the field


def update_request_from_pb(request: pb.UpdateConfigRequest) -> UpdateRequest:
    """An UpdateConfig call in domain terms (unset optional fields stay None)."""
    return UpdateRequest(
        stage_type=stage_from_pb(request.stage_type),
        provider_kind=provider_from_pb(request.provider_kind),
        api_key=request.api_key if request.HasField("api_key") else None,
        model=request.model if request.HasField("model") else None,
        options=dict(request.options) or None,
        expected_revision=(
            request.expected_revision if request.HasField("expected_revision") else None
        ),
        validate_only=request.validate_only,
        comment=request.comment,
        allow_unverified=request.allow_unverified,
        fallbacks=routes_from_pb(request),
    )


def watch_request_from_pb(request: pb.WatchConfigRequest) -> WatchRequest:
    """A WatchConfig call, checked: known stages, a non-negative resume revision, a
    client id of at most ``MAX_CLIENT_ID_LENGTH`` characters, a client version of at most
    ``MAX_CLIENT_VERSION_LENGTH`` printable characters (else InvalidArgument)."""
    stages = [stage_from_pb(s, "stage_types") for s in request.stage_types]
    resume = request.resume_revision if request.HasField("resume_revision") else None
    if resume is not None and resume < 0:
        raise InvalidArgument("resume_revision", "must not be negative")
    client_id = request.client_id
    if len(client_id) > MAX_CLIENT_ID_LENGTH or not _printable(client_id):
        raise InvalidArgument(
            "client_id",
            f"must be at most {MAX_CLIENT_ID_LENGTH} printable characters "
            "(no control, format or separator characters other than a space)",
        )
    version = request.client_version
    if len(version) > MAX_CLIENT_VERSION_LENGTH:
        raise InvalidArgument(
            "client_version", f"must be at most {MAX_CLIENT_VERSION_LENGTH} characters"
        )
    if not _printable(version):
        # Shown in admin views and terminals: no control or formatting characters.
        raise InvalidArgument("client_version", "must contain only printable characters")
    return WatchRequest(stages, resume, client_id, version)


def _printable(text: str) -> bool:
    """No control (Cc), format (Cf: bidi overrides, zero-width), separator other than a
    plain space (Zl, Zp, Zs), surrogate or unassigned characters."""
    return all(ch == " " or unicodedata.category(ch) not in _UNPRINTABLE_CATEGORIES for ch in text)


_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})


def stage_to_pb(stage: StageType) -> pb.StageType.ValueType:
    """The proto enum value of a stage."""
    return _STAGE_TO_PB[stage]


def provider_to_pb(provider: ProviderKind) -> pb.ProviderKind.ValueType:
    """The proto enum value of a provider kind."""
    return _PROVIDER_TO_PB[provider]


def status_to_pb(status: ConfigStatus) -> pb.ConfigStatus.ValueType:
    """The proto enum value of a status."""
    return _STATUS_TO_PB[status]


def reason_to_pb(reason: ChangeReason) -> pb.ChangeReason.ValueType:
    """The proto enum value of a change reason."""
    return _REASON_TO_PB[reason]


def timestamp(value: datetime | None) -> Timestamp | None:
    """A Timestamp, or None for a missing time."""
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def config_to_pb(config: StageConfig, *, reveal_key: bool) -> pb.StageConfig:
    """A StageConfig message; the key is plaintext only when ``reveal_key``."""
    message = pb.StageConfig(
        stage_type=_STAGE_TO_PB[config.stage_type],
        provider_kind=_PROVIDER_TO_PB[config.provider_kind],
        api_key=config.api_key if reveal_key else mask_key(config.api_key),
        api_key_masked=not reveal_key,
        model=config.model,
        revision=config.revision,
        status=_STATUS_TO_PB[config.status],
        options=dict(config.options),
        source=_SOURCE_TO_PB[config.source],
        status_reason=config.status_reason,
        status_cause=(
            _CAUSE_TO_PB[config.status_cause]
            if config.status_cause
            else pb.STATUS_CAUSE_UNSPECIFIED
        ),
        api_key_fingerprint=config.api_key_fingerprint,
        fallbacks=routes_to_pb(config.fallbacks, reveal_key=reveal_key),
    )
    if (ts := timestamp(config.updated_at)) is not None:
        message.updated_at.CopyFrom(ts)
    if (ts := timestamp(config.models_cache_updated_at)) is not None:
        message.models_cache_updated_at.CopyFrom(ts)
    return message


def stage_view_to_pb(view: StageView) -> pb.StageConfigView:
    """What an admin sees of one stage (key always masked)."""
    message = pb.StageConfigView(
        stage_type=_STAGE_TO_PB[view.stage_type],
        models=list(view.models),
        allowed_providers=[_PROVIDER_TO_PB[p] for p in view.allowed_providers],
    )
    if view.config is not None:
        message.config.CopyFrom(config_to_pb(view.config, reveal_key=False))
    else:
        message.config.CopyFrom(
            pb.StageConfig(
                stage_type=_STAGE_TO_PB[view.stage_type],
                source=_SOURCE_TO_PB[ConfigSource.UNCONFIGURED],
            )
        )
    return message


def models_to_pb(view: ModelsView) -> pb.ListModelsResponse:
    """A ListModels answer."""
    message = pb.ListModelsResponse(
        models=list(view.models),
        selected_model=view.selected_model,
        provider_kind=_PROVIDER_TO_PB[view.provider_kind],
        status=_STATUS_TO_PB[view.status],
        status_reason=view.status_reason,
    )
    if (ts := timestamp(view.updated_at)) is not None:
        message.updated_at.CopyFrom(ts)
    return message


def refresh_to_pb(outcome: RefreshOutcome) -> pb.RefreshResult:
    """One stage's refresh result."""
    return pb.RefreshResult(
        stage_type=_STAGE_TO_PB[outcome.stage_type],
        status=_STATUS_TO_PB[outcome.status],
        status_reason=outcome.status_reason,
        models=list(outcome.models),
        selected_model=outcome.selected_model,
        replaced_model=outcome.replaced_model,
        revision=outcome.revision,
    )


def history_entry_to_pb(entry: HistoryEntry) -> pb.HistoryEntry:
    """A history row (the diff shows keys only as fingerprints)."""
    message = pb.HistoryEntry(
        revision=entry.revision,
        stage_type=_STAGE_TO_PB[entry.stage_type],
        actor=entry.actor,
        reason=_REASON_TO_PB[entry.reason],
        changes=[
            pb.FieldChange(field=d.field, old_value=d.old, new_value=d.new) for d in entry.diff
        ],
        comment=entry.comment,
    )
    if (ts := timestamp(entry.created_at)) is not None:
        message.time.CopyFrom(ts)
    return message
