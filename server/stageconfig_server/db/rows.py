"""Rows ↔ records: the one mapping between the tables' columns and ``db.records``.

A stage's config is stored twice in the same shape: as its ``provider_configs`` row and
as the ``state`` JSON of each ``revision_log`` row (minus the ciphertext, which the log
references through ``api_key_id``, and the revision, which is the log row's own).
``config_columns`` and ``config_from_columns`` serve both, so a new column is added in
one place.

The log stores a stage's model list only when it changed: a revision whose list equals
the one before names the revision that stored it (``models_cache_at``) instead, so a
status that flaps, or a refresh that finds the same models, adds a few hundred bytes to
the log rather than the whole list (up to 1,000 ids of 256 characters). Older rows that
carry the list inline read as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stageconfig_server.db.records import (
    ConfigWrite,
    LogEntry,
    StoredConfig,
    StoredKey,
    StoredRoute,
)
from stageconfig_server.db.route_rows import diff_routes, routes_from_json, routes_json
from stageconfig_server.domain import (
    ChangeReason,
    ConfigStatus,
    FieldDiff,
    HistoryEntry,
    ProviderKind,
    StageType,
    StatusCause,
)

_NOT_IN_LOG_STATE = ("api_key_encrypted", "revision")

MODELS_AT = "models_cache_at"
"""The log state's reference to the revision whose state holds the same model list."""


def utc(value: datetime | str | None) -> datetime | None:
    """A timezone-aware time from a column or an ISO string (SQLite hands back naive
    datetimes even for timezone=True columns, and the log state stores ISO strings)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def config_columns(config: StoredConfig) -> dict[str, Any]:
    """The ``provider_configs`` values of ``config`` (every column but ``stage_type``)."""
    return {
        "provider_kind": config.provider_kind.value,
        "api_key_encrypted": config.api_key_encrypted,
        "api_key_id": config.api_key_id,
        "api_key_fingerprint": config.api_key_fingerprint,
        "model": config.model,
        "models_cache": list(config.models_cache),
        "models_cache_updated_at": config.models_cache_updated_at,
        "status": config.status.value,
        "status_cause": config.status_cause.value if config.status_cause else None,
        "status_reason": config.status_reason,
        "options": dict(config.options),
        "revision": config.revision,
        "updated_at": config.updated_at,
        "fallbacks": routes_json(config.fallbacks, ciphertext=True),
    }


def config_from_columns(
    stage: StageType, values: Mapping[Any, Any], ciphertexts: Mapping[int, str] | None = None
) -> StoredConfig:
    """The record of a ``provider_configs`` row, or of a log state with the ciphertext
    and revision put back (``config_columns``' inverse; ``ciphertexts`` by ``api_keys``
    id fill in the fallback routes' keys of a log state)."""
    cause = values.get("status_cause")
    return StoredConfig(
        stage_type=stage,
        provider_kind=ProviderKind(values["provider_kind"]),
        api_key_encrypted=values.get("api_key_encrypted") or "",
        api_key_id=values.get("api_key_id"),
        api_key_fingerprint=values.get("api_key_fingerprint") or "",
        model=values["model"],
        models_cache=tuple(values.get("models_cache") or ()),
        models_cache_updated_at=utc(values.get("models_cache_updated_at")),
        status=ConfigStatus(values["status"]),
        status_cause=StatusCause(cause) if cause else None,
        status_reason=values.get("status_reason") or "",
        options=dict(values.get("options") or {}),
        revision=values["revision"],
        updated_at=utc(values.get("updated_at")) or datetime.now(UTC),
        fallbacks=routes_from_json(values.get("fallbacks"), ciphertexts),
    )


def log_state(config: StoredConfig, models_at: int | None = None) -> dict[str, Any]:
    """The log's JSON copy of a config: its columns without ciphertext and revision, and
    without the model list when ``models_at`` names a revision that stored the same."""
    state = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in config_columns(config).items()
        if name not in _NOT_IN_LOG_STATE
    }
    state["fallbacks"] = routes_json(config.fallbacks, ciphertext=False)
    if models_at is not None:
        del state["models_cache"]
        state[MODELS_AT] = models_at
    return state


def models_stored_at(revision: int, state: Mapping[str, Any] | None) -> int | None:
    """Which revision's log state holds the list that ``state`` (the log state of
    ``revision``) has: ``revision`` itself, the one it references, or None (no state)."""
    if state is None:
        return None
    if "models_cache" in state:
        return revision
    ref = state.get(MODELS_AT)
    return ref if isinstance(ref, int) else None


def stored_from_write(
    write: ConfigWrite,
    *,
    ciphertext: str,
    key_id: int | None,
    revision: int,
    now: datetime,
    fallbacks: tuple[StoredRoute, ...] = (),
) -> StoredConfig:
    """The row a write leaves behind, once its key ids, revision and time are known."""
    return StoredConfig(
        stage_type=write.stage_type,
        provider_kind=write.provider_kind,
        api_key_encrypted=ciphertext,
        api_key_id=key_id,
        api_key_fingerprint=write.api_key_fingerprint,
        model=write.model,
        models_cache=tuple(write.models_cache),
        models_cache_updated_at=write.models_cache_updated_at,
        status=write.status,
        status_cause=write.status_cause,
        status_reason=write.status_reason,
        options=dict(write.options),
        revision=revision,
        updated_at=now,
        fallbacks=fallbacks,
    )


@dataclass(frozen=True, slots=True)
class LogRow:
    """The ``revision_log`` values of one change."""

    change: HistoryEntry
    state: StoredConfig
    models_at: int | None = None
    """The revision whose state already holds this state's model list (None: store it)."""

    def columns(self) -> dict[str, Any]:
        """The row to insert."""
        change = self.change
        return {
            "revision": change.revision,
            "stage_type": change.stage_type.value,
            "actor": change.actor,
            "reason": change.reason.value,
            "diff": [{"field": d.field, "old": d.old, "new": d.new} for d in change.diff],
            "comment": change.comment,
            "state": log_state(self.state, self.models_at),
            "created_at": change.created_at,
        }


def history_from_row(row: Any) -> HistoryEntry:
    """What an admin sees of a ``revision_log`` row."""
    return HistoryEntry(
        revision=row.revision,
        stage_type=StageType(row.stage_type),
        actor=row.actor,
        reason=ChangeReason(row.reason),
        diff=tuple(FieldDiff(d["field"], d["old"], d["new"]) for d in row.diff),
        comment=row.comment or "",
        created_at=utc(row.created_at) or datetime.now(UTC),
    )


def log_from_row(
    row: Any, ciphertexts: Mapping[int, str], model_lists: Mapping[int, list[str]]
) -> LogEntry:
    """A ``revision_log`` row with its state; ``ciphertexts`` holds the referenced keys',
    ``model_lists`` the referenced revisions' model lists."""
    key_id = row.state.get("api_key_id")
    models_at = row.state.get(MODELS_AT)
    state = config_from_columns(
        StageType(row.stage_type),
        {
            **row.state,
            "models_cache": (
                model_lists.get(models_at, [])
                if "models_cache" not in row.state and isinstance(models_at, int)
                else row.state.get("models_cache")
            ),
            "revision": row.revision,
            "api_key_encrypted": ciphertexts.get(key_id, "") if key_id is not None else "",
        },
        ciphertexts,
    )
    return LogEntry(history_from_row(row), state)


def key_from_row(row: Any) -> StoredKey:
    """The record of an ``api_keys`` row."""
    return StoredKey(
        id=row.id,
        provider_kind=ProviderKind(row.provider_kind),
        stage_type=StageType(row.stage_type),
        api_key_encrypted=row.api_key_encrypted,
        fingerprint=row.fingerprint,
        created_at=utc(row.created_at) or datetime.now(UTC),
        created_by=row.created_by or "",
    )


def diff_configs(old: StoredConfig | None, new: StoredConfig) -> tuple[FieldDiff, ...]:
    """The admin-facing diff between two states; keys appear only as fingerprints."""

    def fields(config: StoredConfig | None) -> dict[str, str]:
        if config is None:
            return {}
        return {
            "provider_kind": config.provider_kind.value,
            "api_key": f"fingerprint {config.api_key_fingerprint}",
            "model": config.model,
            "options": ",".join(f"{k}={v}" for k, v in sorted(config.options.items())),
            "status": config.status.value,
            "status_reason": config.status_reason,
        }

    before, after = fields(old), fields(new)
    return (
        *(
            FieldDiff(name, before.get(name, ""), value)
            for name, value in after.items()
            if before.get(name, "") != value
        ),
        *diff_routes(old.fallbacks if old else (), new.fallbacks),
    )
