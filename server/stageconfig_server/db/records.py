"""Frozen records the repository takes and returns: plain data, no SQLAlchemy, no
plaintext keys. What admins see of a revision is the domain's ``HistoryEntry``; these
records add the ciphertexts and key ids only the service handles."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from stageconfig_server.domain import (
    ChangeReason,
    ConfigStatus,
    FieldDiff,
    HistoryEntry,
    ProviderKind,
    StageType,
    StatusCause,
)


@dataclass(frozen=True, slots=True)
class StoredRoute:
    """One fallback route as stored in ``provider_configs.fallbacks`` (its key encrypted,
    referenced by its ``api_keys`` row like the primary's).

    In a ``ConfigWrite``, ``api_key_id`` None means a new key: the write adds it to
    ``api_keys`` (``api_key_encrypted`` holds its ciphertext)."""

    provider_kind: ProviderKind
    api_key_encrypted: str = field(repr=False)
    api_key_id: int | None
    api_key_fingerprint: str
    model: str
    options: Mapping[str, str]
    status: ConfigStatus
    status_cause: StatusCause | None
    status_reason: str
    models_cache: tuple[str, ...] = ()


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
    fallbacks: tuple[StoredRoute, ...] = ()


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
class LogEntry:
    """A ``revision_log`` row: what admins see of the change (``change``) and the stage's
    config after it (``state``, whose ciphertext is the referenced key's, for resuming
    watchers and for rollback). Only the service reads ``state``."""

    change: HistoryEntry
    state: StoredConfig

    @property
    def revision(self) -> int:
        """The revision this entry wrote."""
        return self.change.revision

    @property
    def stage_type(self) -> StageType:
        """The stage it changed."""
        return self.change.stage_type

    @property
    def reason(self) -> ChangeReason:
        """Why it was written."""
        return self.change.reason

    @property
    def diff(self) -> tuple[FieldDiff, ...]:
        """The admin-facing diff (keys only as fingerprints)."""
        return self.change.diff


@dataclass(frozen=True, slots=True)
class ConfigWrite:
    """Everything one change writes: the new row values, and a key to add to ``api_keys``
    when the key is new (``new_key``) or the id of a key already stored."""

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
    fallbacks: tuple[StoredRoute, ...] | None = None
    """The fallback routes to store; None keeps the stored ones (a change that is not
    about routes, e.g. a refresh of the primary, never drops them)."""


__all__ = ["ConfigWrite", "FieldDiff", "LogEntry", "StoredConfig", "StoredKey", "StoredRoute"]
