"""Cross-replica propagation on PostgreSQL.

Every committed change issues ``pg_notify`` inside its transaction (repository). Each
replica keeps one dedicated asyncpg connection LISTENing on that channel and treats a
notification only as a hint: it then reads the revision log from its own head
(``ConfigService.catch_up``), so a lost or coalesced notification loses nothing. A
periodic poll and a catch-up after every (re)connect bound how late a replica can be
even when notifications are lost entirely.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from stageconfig_server.db.repository import CHANGE_CHANNEL
from stageconfig_server.errors import StorageUnavailable
from stageconfig_server.service import ConfigService

log = logging.getLogger(__name__)

DEFAULT_POLL_SECONDS = 2.0
"""Catch-up poll period: the worst-case delay when every notification is lost."""


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """The plain ``postgresql://`` DSN asyncpg wants, from a SQLAlchemy URL."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PostgresChangeFeed:
    """Keeps a replica's in-memory view current with changes committed by others."""

    def __init__(
        self,
        service: ConfigService,
        database_url: str,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
    ) -> None:
        self._service = service
        self._dsn = asyncpg_dsn(database_url)
        self._poll_seconds = poll_seconds
        self._hint = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def start(self, connect_timeout: float = 10.0) -> None:
        """Start listening; returns once the first LISTEN is in place (or the timeout)."""
        self._task = asyncio.create_task(self._run(), name="stageconfig-change-feed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), connect_timeout)

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        self._hint.set()

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
                await conn.add_listener(CHANGE_CHANNEL, self._on_notify)
                self._connected.set()
                backoff = 0.2
                # Anything committed while we were not listening is in the log.
                await self._catch_up()
                while not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._hint.wait(), self._poll_seconds)
                    self._hint.clear()
                    # A dead socket may go unnoticed by LISTEN alone: probe it.
                    await conn.fetchval("SELECT 1", timeout=5)
                    await self._catch_up()
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning(
                    "change feed connection lost (%s); reconnecting in %.1f s",
                    type(exc).__name__,
                    backoff,
                )
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 5.0)

    async def _catch_up(self) -> None:
        try:
            applied = await self._service.catch_up()
        except StorageUnavailable as exc:
            log.warning("catch-up failed: %s", exc.message)
            return
        if applied:
            log.debug("applied %d change(s) from other replicas", applied)
