"""The repository: the only code that speaks SQL. It takes and returns the records of
``db.records``; SQLAlchemy objects never leave it, and every driver error leaves it as
``StorageUnavailable`` (translated in exactly one place, ``_storage_errors``)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Row, Table, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stageconfig_server.db.engine import WRITE_OPTION
from stageconfig_server.db.models import (
    ApiKeyRow,
    JobRunRow,
    ProviderConfigRow,
    RevisionCounterRow,
    RevisionLogRow,
    ServiceStateRow,
)
from stageconfig_server.db.records import ConfigWrite, FieldDiff, LogEntry, StoredConfig, StoredKey
from stageconfig_server.domain import (
    ChangeReason,
    ConfigStatus,
    ProviderKind,
    StageType,
    StatusCause,
)
from stageconfig_server.errors import RevisionConflict, StorageUnavailable

_configs = cast(Table, ProviderConfigRow.__table__)
_keys = cast(Table, ApiKeyRow.__table__)
_log = cast(Table, RevisionLogRow.__table__)
_counter = cast(Table, RevisionCounterRow.__table__)
_state = cast(Table, ServiceStateRow.__table__)
_jobs = cast(Table, JobRunRow.__table__)

CANARY_NAME = "encryption_canary"
CHANGE_CHANNEL = "stageconfig_changes"
"""PostgreSQL NOTIFY channel: each committed revision is announced on it (a hint to
other replicas to read the log; the payload is the revision number)."""
_SYNC_LOCK_KEY = 0x5C_0F_16  # advisory-lock key of the periodic jobs
_PROBE_BYTES = 4096
"""Size of the health probe's row: larger than a page, so the probe needs room to grow
(a full disk or a size-limited SQLite file refuses it like a real write)."""

FailureListener = Callable[[StorageUnavailable], None]


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for timezone=True columns.
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _config_from_row(row: Row[Any]) -> StoredConfig:
    cause = row.status_cause
    return StoredConfig(
        stage_type=StageType(row.stage_type),
        provider_kind=ProviderKind(row.provider_kind),
        api_key_encrypted=row.api_key_encrypted,
        api_key_id=row.api_key_id,
        api_key_fingerprint=row.api_key_fingerprint or "",
        model=row.model,
        models_cache=tuple(row.models_cache or ()),
        models_cache_updated_at=_utc(row.models_cache_updated_at),
        status=ConfigStatus(row.status),
        status_cause=StatusCause(cause) if cause else None,
        status_reason=row.status_reason or "",
        options=dict(row.options or {}),
        revision=row.revision,
        updated_at=_utc(row.updated_at) or datetime.now(UTC),
    )


def _state_json(config: StoredConfig) -> dict[str, Any]:
    """The log's copy of a config: everything but the ciphertext (the key is referenced)."""
    return {
        "provider_kind": config.provider_kind.value,
        "api_key_id": config.api_key_id,
        "api_key_fingerprint": config.api_key_fingerprint,
        "model": config.model,
        "models_cache": list(config.models_cache),
        "models_cache_updated_at": (
            config.models_cache_updated_at.isoformat() if config.models_cache_updated_at else None
        ),
        "status": config.status.value,
        "status_cause": config.status_cause.value if config.status_cause else None,
        "status_reason": config.status_reason,
        "options": dict(config.options),
        "updated_at": config.updated_at.isoformat(),
    }


def _log_from_row(row: Row[Any], ciphertexts: dict[int, str]) -> LogEntry:
    state = row.state
    stage = StageType(row.stage_type)
    key_id = state.get("api_key_id")
    cache_at = state.get("models_cache_updated_at")
    cause = state.get("status_cause")
    config = StoredConfig(
        stage_type=stage,
        provider_kind=ProviderKind(state["provider_kind"]),
        api_key_encrypted=ciphertexts.get(key_id, "") if key_id is not None else "",
        api_key_id=key_id,
        api_key_fingerprint=state.get("api_key_fingerprint", ""),
        model=state["model"],
        models_cache=tuple(state.get("models_cache") or ()),
        models_cache_updated_at=datetime.fromisoformat(cache_at) if cache_at else None,
        status=ConfigStatus(state["status"]),
        status_cause=StatusCause(cause) if cause else None,
        status_reason=state.get("status_reason", ""),
        options=dict(state.get("options") or {}),
        revision=row.revision,
        updated_at=datetime.fromisoformat(state["updated_at"]),
    )
    return LogEntry(
        revision=row.revision,
        stage_type=stage,
        actor=row.actor,
        reason=ChangeReason(row.reason),
        diff=tuple(FieldDiff(d["field"], d["old"], d["new"]) for d in row.diff),
        comment=row.comment or "",
        created_at=_utc(row.created_at) or datetime.now(UTC),
        state=config,
    )


def _key_from_row(row: Row[Any]) -> StoredKey:
    return StoredKey(
        id=row.id,
        provider_kind=ProviderKind(row.provider_kind),
        stage_type=StageType(row.stage_type),
        api_key_encrypted=row.api_key_encrypted,
        fingerprint=row.fingerprint,
        created_at=_utc(row.created_at) or datetime.now(UTC),
        created_by=row.created_by or "",
    )


def diff_configs(old: StoredConfig | None, new: StoredConfig) -> tuple[FieldDiff, ...]:
    """The admin-facing diff between two states; keys appear only as fingerprints."""

    def key_view(config: StoredConfig | None) -> str:
        return f"fingerprint {config.api_key_fingerprint}" if config else ""

    def fields(config: StoredConfig | None) -> dict[str, str]:
        if config is None:
            return {}
        return {
            "provider_kind": config.provider_kind.value,
            "api_key": key_view(config),
            "model": config.model,
            "options": ",".join(f"{k}={v}" for k, v in sorted(config.options.items())),
            "status": config.status.value,
            "status_reason": config.status_reason,
        }

    before, after = fields(old), fields(new)
    return tuple(
        FieldDiff(name, before.get(name, ""), value)
        for name, value in after.items()
        if before.get(name, "") != value
    )


class Repository:
    """Reads and writes stageconfig's tables through one AsyncEngine."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] | None = None) -> None:
        self._engine = engine
        self._clock = clock or (lambda: datetime.now(UTC))
        self._failure_listeners: list[FailureListener] = []

    def add_failure_listener(self, listener: FailureListener) -> None:
        """Call ``listener`` with every StorageUnavailable this repository raises (the
        health monitor turns NOT_SERVING at once instead of at its next probe)."""
        self._failure_listeners.append(listener)

    @property
    def engine(self) -> AsyncEngine:
        """The engine (for migrations and health checks)."""
        return self._engine

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._storage_errors(), self._engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self._storage_errors(), self._engine.connect() as conn:
            conn = await conn.execution_options(**{WRITE_OPTION: True})
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def _storage_errors(self) -> AsyncIterator[None]:
        try:
            yield
        except (OperationalError, DBAPIError, OSError) as exc:
            if isinstance(exc, IntegrityError):
                raise
            error = StorageUnavailable(f"the database is unavailable: {_describe(exc)}")
            for listener in self._failure_listeners:
                listener(error)
            raise error from exc

    async def ping(self) -> None:
        """Raise StorageUnavailable unless the database answers a trivial query."""
        async with self._read() as conn:
            await conn.execute(select(1))

    async def probe_write(self) -> None:
        """Raise StorageUnavailable unless the database commits a write that needs room.

        One transaction inserts a row larger than a page and deletes it again: nothing
        stays behind, but the database had to allocate pages and write them to its
        log, which a full disk, a size limit or a read-only database refuses.
        """
        name = f"health-probe-{secrets.token_hex(8)}"
        async with self._write() as conn:
            await conn.execute(
                insert(_state).values(name=name, value=secrets.token_hex(_PROBE_BYTES // 2))
            )
            await conn.execute(_state.delete().where(_state.c.name == name))

    # -- configs -------------------------------------------------------------------

    async def get(self, stage: StageType) -> StoredConfig | None:
        """The stage's row, or None."""
        async with self._read() as conn:
            row = (
                await conn.execute(select(_configs).where(_configs.c.stage_type == stage))
            ).first()
        return _config_from_row(row) if row else None

    async def list_all(self) -> dict[StageType, StoredConfig]:
        """Every stored row, by stage."""
        async with self._read() as conn:
            rows = (await conn.execute(select(_configs))).all()
        return {StageType(r.stage_type): _config_from_row(r) for r in rows}

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
            current_row = (
                await conn.execute(
                    select(_configs).where(_configs.c.stage_type == write.stage_type)
                )
            ).first()
            current = _config_from_row(current_row) if current_row else None
            current_revision = current.revision if current else 0
            if expected_revision is not None and expected_revision != current_revision:
                raise RevisionConflict(
                    f"stage {write.stage_type.value} is at revision {current_revision}, "
                    f"not {expected_revision}: reload and retry",
                    current_revision,
                )
            key_id = write.api_key_id
            if write.new_key:
                key_id = (
                    await conn.execute(
                        insert(_keys)
                        .values(
                            provider_kind=write.provider_kind.value,
                            stage_type=write.stage_type.value,
                            api_key_encrypted=write.api_key_encrypted,
                            fingerprint=write.api_key_fingerprint,
                            created_at=now,
                            created_by=write.actor,
                        )
                        .returning(_keys.c.id)
                    )
                ).scalar_one()
            ciphertext = write.api_key_encrypted
            if not write.new_key and key_id is not None:
                # A reused key: take its ciphertext as stored now, inside this
                # transaction. The caller read it before a slow provider call; a
                # rotate-keys that ran meanwhile re-encrypted it, and writing the old
                # ciphertext back would leave a value only the old secret opens.
                current_ciphertext = (
                    await conn.execute(
                        select(_keys.c.api_key_encrypted).where(_keys.c.id == key_id)
                    )
                ).scalar()
                if current_ciphertext is not None:
                    ciphertext = current_ciphertext
            stored = StoredConfig(
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
            )
            values = {
                "provider_kind": stored.provider_kind.value,
                "api_key_encrypted": stored.api_key_encrypted,
                "api_key_id": stored.api_key_id,
                "api_key_fingerprint": stored.api_key_fingerprint,
                "model": stored.model,
                "models_cache": list(stored.models_cache),
                "models_cache_updated_at": stored.models_cache_updated_at,
                "status": stored.status.value,
                "status_cause": stored.status_cause.value if stored.status_cause else None,
                "status_reason": stored.status_reason,
                "options": dict(stored.options),
                "revision": revision,
                "updated_at": now,
            }
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
            diff = diff_configs(current, stored)
            await conn.execute(
                insert(_log).values(
                    revision=revision,
                    stage_type=write.stage_type.value,
                    actor=write.actor,
                    reason=write.reason.value,
                    diff=[{"field": d.field, "old": d.old, "new": d.new} for d in diff],
                    comment=write.comment,
                    state=_state_json(stored),
                    created_at=now,
                )
            )
            if conn.dialect.name == "postgresql":
                # Delivered at commit, never before: a replica that hears it can read it.
                await conn.execute(
                    text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": CHANGE_CHANNEL, "payload": str(revision)},
                )
        entry = LogEntry(
            revision=revision,
            stage_type=write.stage_type,
            actor=write.actor,
            reason=write.reason,
            diff=diff,
            comment=write.comment,
            created_at=now,
            state=stored,
        )
        return stored, entry

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
        return _key_from_row(row) if row else None

    async def list_keys(self) -> list[StoredKey]:
        """Every saved key, oldest first."""
        async with self._read() as conn:
            rows = (await conn.execute(select(_keys).order_by(_keys.c.id))).all()
        return [_key_from_row(r) for r in rows]

    # -- revision log ------------------------------------------------------------------

    async def _log_query(self, conn: AsyncConnection, query: Any) -> list[LogEntry]:
        rows = (await conn.execute(query)).all()
        key_ids = {r.state.get("api_key_id") for r in rows} - {None}
        ciphertexts: dict[int, str] = {}
        if key_ids:
            key_rows = await conn.execute(
                select(_keys.c.id, _keys.c.api_key_encrypted).where(_keys.c.id.in_(key_ids))
            )
            ciphertexts = {k.id: k.api_key_encrypted for k in key_rows}
        return [_log_from_row(r, ciphertexts) for r in rows]

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
    ) -> list[LogEntry]:
        """Log entries newest first, optionally for one stage and below a revision."""
        query = select(_log).order_by(_log.c.revision.desc()).limit(limit)
        if stage is not None:
            query = query.where(_log.c.stage_type == stage.value)
        if before_revision is not None:
            query = query.where(_log.c.revision < before_revision)
        async with self._read() as conn:
            return await self._log_query(conn, query)

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
        """Re-encrypt every ciphertext (configs, api_keys, canary) with ``rotate`` in one
        transaction; returns how many values were rewritten."""
        count = 0
        async with self._write() as conn:
            for table, column, pk in (
                (_configs, _configs.c.api_key_encrypted, _configs.c.stage_type),
                (_keys, _keys.c.api_key_encrypted, _keys.c.id),
                (_state, _state.c.value, _state.c.name),
            ):
                query = select(pk, column)
                if table is _state:
                    query = query.where(_state.c.name == CANARY_NAME)
                for key, value in (await conn.execute(query)).all():
                    await conn.execute(
                        update(table).where(pk == key).values({column.name: rotate(value)})
                    )
                    count += 1
        return count

    # -- job runs -------------------------------------------------------------------------

    async def last_job_finish(self, job: str) -> datetime | None:
        """When ``job`` last finished (any period), or None."""
        async with self._read() as conn:
            value = (
                await conn.execute(select(func.max(_jobs.c.finished_at)).where(_jobs.c.job == job))
            ).scalar()
        return _utc(value)

    async def claim_job_run(self, job: str, period: str) -> bool:
        """Record that ``job`` runs for ``period``; False when another run already claimed it."""
        try:
            async with self._write() as conn:
                if conn.dialect.name == "postgresql":
                    # Replicas firing together queue here; the loser then sees the row.
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SYNC_LOCK_KEY}
                    )
                exists = (
                    await conn.execute(
                        select(_jobs.c.job).where(_jobs.c.job == job, _jobs.c.period == period)
                    )
                ).first()
                if exists:
                    return False
                await conn.execute(
                    insert(_jobs).values(job=job, period=period, started_at=self._clock())
                )
        except IntegrityError:
            return False
        return True

    async def finish_job_run(self, job: str, period: str, outcome: str) -> None:
        """Mark a claimed run finished with a one-line outcome."""
        async with self._write() as conn:
            await conn.execute(
                update(_jobs)
                .where(_jobs.c.job == job, _jobs.c.period == period)
                .values(finished_at=self._clock(), outcome=outcome)
            )


def _describe(exc: BaseException) -> str:
    """A one-line cause for an operator, without SQL or parameters (which could hold
    ciphertexts) and without a traceback."""
    if isinstance(exc, SQLAlchemyError) and getattr(exc, "orig", None) is not None:
        orig = exc.orig  # type: ignore[attr-defined]
        return f"{type(orig).__name__}: {str(orig).splitlines()[0][:200]}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
