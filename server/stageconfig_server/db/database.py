"""Connections to the database and the one place driver errors are translated.

``Database`` hands the repository read and write connections (writes as ``BEGIN
IMMEDIATE`` on SQLite, see ``db.engine``) and turns every driver error into
``StorageUnavailable`` in exactly one place, ``_storage_errors``; it also answers the
health monitor's probes.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import cast

from sqlalchemy import Table, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stageconfig_server.db.engine import WRITE_OPTION
from stageconfig_server.db.models import ServiceStateRow
from stageconfig_server.errors import StorageUnavailable

_state = cast(Table, ServiceStateRow.__table__)

_PROBE_BYTES = 4096
"""Size of the health probe's row: larger than a page, so the probe needs room to grow
(a full disk or a size-limited SQLite file refuses it like a real write)."""

FailureListener = Callable[[StorageUnavailable], None]


class Database:
    """One AsyncEngine, its read/write connections, and its health probes."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
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


def _describe(exc: BaseException) -> str:
    """A one-line cause for an operator, without SQL or parameters (which could hold
    ciphertexts) and without a traceback."""
    if isinstance(exc, SQLAlchemyError) and getattr(exc, "orig", None) is not None:
        orig = exc.orig  # type: ignore[attr-defined]
        return f"{type(orig).__name__}: {str(orig).splitlines()[0][:200]}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
