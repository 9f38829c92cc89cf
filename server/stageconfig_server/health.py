"""The database's health, as a serving / not serving signal for the transport.

Reads never touch the database (the service answers them from its in-memory view), so
a database that fails does not stop the server from serving workers — but every write
(UpdateConfig, RollbackConfig, the model sync) answers UNAVAILABLE until it returns.
Health says so: not serving while the database is unavailable, serving again as soon
as it accepts a write. The signal goes to a ``ServingStatus``; ``rpc/health.py`` is the
one that turns it into ``grpc.health.v1`` NOT_SERVING / SERVING for ``""`` and
``stageconfig.v1.StageConfigService``.

How trouble is noticed:

- at once, when any repository call raises StorageUnavailable (the repository's
  failure hook, so a failed UpdateConfig flips health before its caller retries);
- by a cheap read (``SELECT 1``) every ``ping_seconds`` while all is well, so an idle
  server notices a database that went away.

While unhealthy the monitor probes with a small *write* every ``retry_seconds``: a read
succeeding says nothing about a full disk or a read-only database. The first success
turns health back to SERVING and runs ``on_recovered`` (the service's catch-up), so a
change whose commit outcome was unknown when the database failed reaches the watchers
without waiting for the next write.

After the transport's ``enter_graceful_shutdown`` every update is ignored, so the
monitor can never turn a stopping server back to SERVING.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from stageconfig_server.errors import StorageUnavailable

log = logging.getLogger(__name__)

DEFAULT_PING_SECONDS = 2.0
"""Read probe period while healthy: how late an idle server notices an outage."""
DEFAULT_RETRY_SECONDS = 0.5
"""Write probe period while unhealthy: how late health follows a recovery."""
DEFAULT_PROBE_TIMEOUT_SECONDS = 15.0
"""A probe slower than this counts as a failure (longer than SQLite's 10 s busy
timeout, so a long but legitimate writer does not look like an outage)."""


class ServingStatus(Protocol):
    """Where the monitor reports whether the server can serve (the transport's health)."""

    async def set_serving(self, serving: bool) -> None:
        """Report serving (True) or not serving (False)."""


class DatabaseProbe(Protocol):
    """What the monitor needs of the repository."""

    async def ping(self) -> None:
        """Raise StorageUnavailable unless the database answers a read."""

    async def probe_write(self) -> None:
        """Raise StorageUnavailable unless the database commits a small write."""

    def add_failure_listener(self, listener: Callable[[StorageUnavailable], None]) -> None:
        """Call ``listener`` whenever a database call fails."""


class DatabaseHealth:
    """Keeps the server's serving status in step with the database."""

    def __init__(
        self,
        database: DatabaseProbe,
        health: ServingStatus,
        *,
        on_recovered: Callable[[], Awaitable[object]] | None = None,
        ping_seconds: float = DEFAULT_PING_SECONDS,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        probe_timeout_seconds: float = DEFAULT_PROBE_TIMEOUT_SECONDS,
    ) -> None:
        self._database = database
        self._health = health
        self._on_recovered = on_recovered
        self._ping_seconds = ping_seconds
        self._retry_seconds = retry_seconds
        self._probe_timeout = probe_timeout_seconds
        self._healthy = True
        self._last_error = ""
        self._failed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        database.add_failure_listener(self.report_failure)

    @property
    def healthy(self) -> bool:
        """Whether the database accepted the last probe and no call failed since."""
        return self._healthy

    @property
    def last_error(self) -> str:
        """Why the database was last found unavailable ("" when it never was)."""
        return self._last_error

    async def start(self) -> None:
        """Report SERVING (the database just opened) and start probing."""
        await self._health.set_serving(True)
        self._task = asyncio.create_task(self._run(), name="stageconfig-database-health")

    async def stop(self) -> None:
        """Stop probing (the health status is left as it is)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def report_failure(self, error: StorageUnavailable) -> None:
        """A database call failed: turn NOT_SERVING at once and start write probes.

        Synchronous (the repository calls it from its error path); the status change
        itself happens on the monitor's task, within one event-loop turn.
        """
        self._last_error = error.message
        self._failed.set()

    async def _run(self) -> None:
        while True:
            if self._healthy:
                # Sleep until the next ping, or until a call reports a failure.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._ping_seconds):
                        await self._failed.wait()
                if not self._failed.is_set() and await self._probe(write=False):
                    continue
                self._failed.clear()
                await self._turn_unhealthy()
            else:
                # Wait first: right after a failure the database is most likely still
                # failing, and a struggling one is better left alone for a moment.
                await asyncio.sleep(self._retry_seconds)
                self._failed.clear()
                if await self._probe(write=True):
                    await self._turn_healthy()

    async def _probe(self, *, write: bool) -> bool:
        try:
            async with asyncio.timeout(self._probe_timeout):
                if write:
                    await self._database.probe_write()
                else:
                    await self._database.ping()
        except StorageUnavailable as exc:
            self._last_error = exc.message
            return False
        except TimeoutError:
            self._last_error = f"the database did not answer within {self._probe_timeout:g} s"
            return False
        except Exception:  # the monitor must outlive any surprise
            log.exception("database health probe failed unexpectedly")
            self._last_error = "the database health probe failed (see the server log)"
            return False
        return True

    async def _turn_unhealthy(self) -> None:
        self._healthy = False
        log.error(
            "database unavailable (%s): health NOT_SERVING; writes answer UNAVAILABLE, "
            "reads are served from memory; probing every %g s",
            self._last_error,
            self._retry_seconds,
        )
        await self._health.set_serving(False)

    async def _turn_healthy(self) -> None:
        if self._on_recovered is not None:
            try:
                await self._on_recovered()
            except StorageUnavailable as exc:
                self._last_error = exc.message
                return  # still unavailable: the next probe tries again
        self._healthy = True
        log.warning("database available again: health SERVING")
        await self._health.set_serving(True)
