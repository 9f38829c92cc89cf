"""The repository: the only code that speaks SQL. It takes and returns the records of
``db.records`` (and the domain's ``HistoryEntry``); SQLAlchemy objects never leave it,
rows become records through the one mapping in ``db.rows``, and every driver error
leaves it as ``StorageUnavailable`` (``db.database``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stageconfig_server.db.database import FailureListener
from stageconfig_server.db.keys import CANARY_NAME, reencrypt_all, stored_with_keys
from stageconfig_server.db.models import (
    ApiKeyRow,
    ProviderConfigRow,
    RevisionCounterRow,
    RevisionLogRow,
    ServiceStateRow,
)
from stageconfig_server.db.records import ConfigWrite, LogEntry, StoredConfig, StoredKey
from stageconfig_server.db.rollouts import RolloutRecords
from stageconfig_server.db.route_rows import route_key_ids
from stageconfig_server.db.rows import (
    MODELS_AT,
    LogRow,
    config_columns,
    config_from_columns,
    diff_configs,
    history_from_row,
    key_from_row,
    log_from_row,
    models_stored_at,
)
from stageconfig_server.domain import HistoryEntry, ProviderKind, StageType
from stageconfig_server.errors import RevisionConflict

_configs = cast(Table, ProviderConfigRow.__table__)
_keys = cast(Table, ApiKeyRow.__table__)
_log = cast(Table, RevisionLogRow.__table__)
_counter = cast(Table, RevisionCounterRow.__table__)
_state = cast(Table, ServiceStateRow.__table__)

CHANGE_CHANNEL = "stageconfig_changes"
"""PostgreSQL NOTIFY channel: each committed revision is announced on it (a hint to
other replicas to read the log; the payload is the revision number)."""


class Repository(RolloutRecords):
    """Reads and writes stageconfig's tables through one AsyncEngine (the job runs'
    table through ``JobRuns``, the rollouts through ``RolloutRecords``)."""

    # -- configs -------------------------------------------------------------------

    async def get(self, stage: StageType) -> StoredConfig | None:
        """The stage's row, or None."""
        async with self._read() as conn:
            row = (
                await conn.execute(select(_configs).where(_configs.c.stage_type == stage))
            ).first()
        return config_from_columns(stage, row._mapping) if row else None

    async def list_all(self) -> dict[StageType, StoredConfig]:
        """Every stored row, by stage."""
        async with self._read() as conn:
            rows = (await conn.execute(select(_configs))).all()
        return {
            StageType(r.stage_type): config_from_columns(StageType(r.stage_type), r._mapping)
            for r in rows
        }

    async def head_revision(self) -> int:
        """The newest revision written (0 before the first write)."""
        async with self._read() as conn:
            head = (await conn.execute(select(_counter.c.head).where(_counter.c.id == 1))).scalar()
        return int(head or 0)

    async def write_config(
        self, write: ConfigWrite, expected_revision: int | None = None
    ) -> tuple[StoredConfig, LogEntry]:
        """Store one change atomically: the row, a new ``api_keys`` row when the key is
        new, the next global revision and its log entry.

        ``expected_revision`` (0 = the stage must not exist yet) is checked inside the
        write transaction; a mismatch raises RevisionConflict and writes nothing.
        """
        now = self._clock()
        async with self._write() as conn:
            # Take the revision first: on PostgreSQL its row lock serializes writers, so
            # the row read below is the latest committed one (READ COMMITTED reads anew
            # per statement). On SQLite, BEGIN IMMEDIATE already holds the write lock.
            revision = await self._next_revision(conn)
            # Checked here, not only in memory: a replica that has not yet heard of a
            # rollout started elsewhere must not slip a change past it.
            await self.refuse_during_rollout(conn, write.stage_type)
            current_row = (
                await conn.execute(
                    select(_configs).where(_configs.c.stage_type == write.stage_type)
                )
            ).first()
            current = (
                config_from_columns(write.stage_type, current_row._mapping) if current_row else None
            )
            current_revision = current.revision if current else 0
            if expected_revision is not None and expected_revision != current_revision:
                raise RevisionConflict(
                    f"stage {write.stage_type.value} is at revision {current_revision}, "
                    f"not {expected_revision}: reload and retry",
                    current_revision,
                )
            # Routes None (not a change of routes) keeps the stored ones.
            stored = await stored_with_keys(conn, write, current, revision, now)
            values = config_columns(stored)
            if current is None:
                await conn.execute(
                    insert(_configs).values(stage_type=write.stage_type.value, **values)
                )
            else:
                await conn.execute(
                    update(_configs)
                    .where(_configs.c.stage_type == write.stage_type)
                    .values(**values)
                )
            change = HistoryEntry(
                revision=revision,
                stage_type=write.stage_type,
                actor=write.actor,
                reason=write.reason,
                diff=diff_configs(current, stored),
                comment=write.comment,
                created_at=now,
            )
            models_at = await self._same_models_at(conn, current, stored)
            await conn.execute(insert(_log).values(**LogRow(change, stored, models_at).columns()))
            await self._announce(conn, revision)
        return stored, LogEntry(change, stored)

    async def _announce(self, conn: AsyncConnection, revision: int) -> None:
        """Tell other replicas (PostgreSQL NOTIFY) that ``revision`` was written."""
        if conn.dialect.name == "postgresql":
            # Delivered at commit, never before: a replica that hears it can read it.
            await conn.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": CHANGE_CHANNEL, "payload": str(revision)},
            )

    async def _same_models_at(
        self, conn: AsyncConnection, current: StoredConfig | None, stored: StoredConfig
    ) -> int | None:
        """The revision whose log state holds ``stored``'s model list when it equals the
        current one (the log then references it), else None (the list is stored)."""
        if current is None or tuple(current.models_cache) != tuple(stored.models_cache):
            return None
        state = (
            await conn.execute(select(_log.c.state).where(_log.c.revision == current.revision))
        ).scalar()
        return models_stored_at(current.revision, state)

    async def touch_models_cache(
        self, stage: StageType, updated_at: datetime, expected_revision: int
    ) -> bool:
        """Move ``models_cache_updated_at`` without a new revision (the cache's content is
        unchanged); False when the stage moved to another revision meanwhile."""
        async with self._write() as conn:
            result = await conn.execute(
                update(_configs)
                .where(_configs.c.stage_type == stage, _configs.c.revision == expected_revision)
                .values(models_cache_updated_at=updated_at)
            )
        return bool(result.rowcount)

    async def _next_revision(self, conn: AsyncConnection) -> int:
        # The counter row is the write lock's anchor on PostgreSQL: concurrent writers
        # queue on it, so revisions commit in order.
        result = await conn.execute(
            update(_counter)
            .where(_counter.c.id == 1)
            .values(head=_counter.c.head + 1)
            .returning(_counter.c.head)
        )
        return int(result.scalar_one())

    # -- api keys --------------------------------------------------------------------

    async def newest_key(self, provider: ProviderKind) -> StoredKey | None:
        """The most recently saved key for ``provider`` (any stage)."""
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(_keys)
                    .where(_keys.c.provider_kind == provider.value)
                    .order_by(_keys.c.id.desc())
                    .limit(1)
                )
            ).first()
        return key_from_row(row) if row else None

    async def list_keys(self) -> list[StoredKey]:
        """Every saved key, oldest first."""
        async with self._read() as conn:
            rows = (await conn.execute(select(_keys).order_by(_keys.c.id))).all()
        return [key_from_row(r) for r in rows]

    # -- revision log ------------------------------------------------------------------

    async def _log_query(self, conn: AsyncConnection, query: Any) -> list[LogEntry]:
        rows = (await conn.execute(query)).all()
        key_ids = {r.state.get("api_key_id") for r in rows} - {None}
        for r in rows:
            key_ids |= route_key_ids(r.state.get("fallbacks"))
        ciphertexts: dict[int, str] = {}
        if key_ids:
            key_rows = await conn.execute(
                select(_keys.c.id, _keys.c.api_key_encrypted).where(_keys.c.id.in_(key_ids))
            )
            ciphertexts = {k.id: k.api_key_encrypted for k in key_rows}
        model_lists = {
            r.revision: r.state["models_cache"] for r in rows if "models_cache" in r.state
        }
        refs = {r.state.get(MODELS_AT) for r in rows} - {None} - set(model_lists)
        if refs:
            list_rows = await conn.execute(
                select(_log.c.revision, _log.c.state).where(_log.c.revision.in_(refs))
            )
            model_lists |= {r.revision: r.state.get("models_cache") or [] for r in list_rows}
        return [log_from_row(r, ciphertexts, model_lists) for r in rows]

    async def log_since(
        self, revision: int, limit: int | None = None, upto: int | None = None
    ) -> list[LogEntry]:
        """Log entries after ``revision`` (up to ``upto`` inclusive), oldest first."""
        query = select(_log).where(_log.c.revision > revision).order_by(_log.c.revision)
        if upto is not None:
            query = query.where(_log.c.revision <= upto)
        if limit is not None:
            query = query.limit(limit)
        async with self._read() as conn:
            return await self._log_query(conn, query)

    async def oldest_retained_revision(self) -> int:
        """The first revision still in the log (0 when empty)."""
        async with self._read() as conn:
            oldest = (await conn.execute(select(func.min(_log.c.revision)))).scalar()
        return int(oldest or 0)

    async def history(
        self, stage: StageType | None, before_revision: int | None, limit: int
    ) -> list[HistoryEntry]:
        """Log entries newest first, optionally for one stage and below a revision (what
        admins see: no state, no ciphertexts)."""
        query = select(_log).order_by(_log.c.revision.desc()).limit(limit)
        if stage is not None:
            query = query.where(_log.c.stage_type == stage.value)
        if before_revision is not None:
            query = query.where(_log.c.revision < before_revision)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [history_from_row(r) for r in rows]

    async def log_entry(self, revision: int) -> LogEntry | None:
        """The log entry of one revision."""
        async with self._read() as conn:
            entries = await self._log_query(conn, select(_log).where(_log.c.revision == revision))
        return entries[0] if entries else None

    # -- service state -----------------------------------------------------------------

    async def get_or_create_canary(self, make: Callable[[], str]) -> tuple[str, bool]:
        """The stored canary, creating it with ``make()`` on first start.

        Returns the canary and whether it was just created.
        """
        async with self._write() as conn:
            value = (
                await conn.execute(select(_state.c.value).where(_state.c.name == CANARY_NAME))
            ).scalar()
            if value is not None:
                return str(value), False
            value = make()
            await conn.execute(insert(_state).values(name=CANARY_NAME, value=value))
            return value, True

    async def reencrypt(self, rotate: Callable[[str], str]) -> int:
        """Re-encrypt every ciphertext (configs and their routes, api_keys, the canary,
        rollout candidates' inline keys) with ``rotate`` in one
        transaction; returns how many values were rewritten."""
        async with self._write() as conn:
            return await reencrypt_all(conn, rotate)


__all__ = ["CANARY_NAME", "CHANGE_CHANNEL", "FailureListener", "Repository"]
