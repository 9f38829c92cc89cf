"""Frozen records the repository returns: plain data, no SQLAlchemy, no plaintext keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from stageconfig_server.domain import (
    ChangeReason,
    ConfigStatus,
    ProviderKind,
    StageType,
    StatusCause,
)


@dataclass(frozen=True, slots=True)
class StoredConfig:
    """A ``provider_configs`` row."""

    stage_type: StageType
    provider_kind: ProviderKind
    api_key_encrypted: str = field(repr=False)
    api_key_id: int | None
    api_key_fingerprint: str
    model: str
    models_cache: tuple[str, ...]
    models_cache_updated_at: datetime | None
    status: ConfigStatus
    status_cause: StatusCause | None
    status_reason: str
    options: Mapping[str, str]
    revision: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An ``api_keys`` row."""

    id: int
    provider_kind: ProviderKind
    stage_type: StageType
    api_key_encrypted: str = field(repr=False)
    fingerprint: str
    created_at: datetime
    created_by: str


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One field's old and new value as shown to admins (keys masked)."""

    field: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A ``revision_log`` row; ``state`` is the stage's config after the change."""

    revision: int
    stage_type: StageType
    actor: str
    reason: ChangeReason
    diff: tuple[FieldDiff, ...]
    comment: str
    created_at: datetime
    state: StoredConfig


@dataclass(frozen=True, slots=True)
class ConfigWrite:
    """Everything one change writes: the new row values, and a key to add to ``api_keys``
    when the key is new (``new_key_encrypted``) or the id of a key already stored."""

    stage_type: StageType
    provider_kind: ProviderKind
    api_key_encrypted: str = field(repr=False)
    api_key_fingerprint: str
    model: str
    models_cache: tuple[str, ...]
    models_cache_updated_at: datetime | None
    status: ConfigStatus
    status_cause: StatusCause | None
    status_reason: str
    options: Mapping[str, str]
    actor: str
    reason: ChangeReason
    comment: str = ""
    new_key: bool = False
    api_key_id: int | None = None
