"""DatabaseHealth on its own: a database that a test can break and mend (a small fake of
the repository's probe surface) and grpc's real aio HealthServicer behind the
transport's ``ServingHealth``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from grpc_health.v1 import health

from stageconfig_server.errors import StorageUnavailable
from stageconfig_server.health import DatabaseHealth
from stageconfig_server.rpc.health import NOT_SERVING, SERVING, ServingHealth
from tests.faults.conftest import wait_until

SERVICES = ("", "stageconfig.v1.StageConfigService")
FAST = 0.02


@dataclass
class FakeDatabase:
    """Answers probes until ``broken``; counts which kind of probe was asked."""

    broken: bool = False
    reads: int = 0
    writes: int = 0
    listeners: list[Callable[[StorageUnavailable], None]] = field(default_factory=list)

    async def ping(self) -> None:
        self.reads += 1
        self._answer()

    async def probe_write(self) -> None:
        self.writes += 1
        self._answer()

    def add_failure_listener(self, listener: Callable[[StorageUnavailable], None]) -> None:
        self.listeners.append(listener)

    def _answer(self) -> None:
        if self.broken:
            error = StorageUnavailable("the database is unavailable: broken on purpose")
            for listener in self.listeners:
                listener(error)
            raise error

    def failed_call(self) -> None:
        """What the repository does when one of the service's calls fails."""
        for listener in self.listeners:
            listener(StorageUnavailable("the database is unavailable: a write failed"))


@dataclass
class Recovery:
    """``on_recovered`` that can itself fail (the catch-up reads the database)."""

    fail: bool = False
    calls: int = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.fail:
            raise StorageUnavailable("the database is unavailable: catch-up failed")


@pytest.fixture
def servicer() -> object:
    return health.aio.HealthServicer()  # type: ignore[attr-defined]


def statuses(servicer: object) -> tuple[int, ...]:
    return tuple(servicer._server_status.get(s) for s in SERVICES)  # type: ignore[attr-defined]


async def until_every_service(servicer: object, status: int, within: float, what: str) -> None:
    """Wait until every service reports ``status``."""
    await wait_until(lambda: statuses(servicer) == (status, status), within, what)


@pytest.fixture
async def monitor(servicer: object) -> AsyncIterator[tuple[DatabaseHealth, FakeDatabase, Recovery]]:
    database, recovery = FakeDatabase(), Recovery()
    watched = DatabaseHealth(
        database,
        ServingHealth(SERVICES, servicer),
        on_recovered=recovery,
        ping_seconds=FAST,
        retry_seconds=FAST,
    )
    await watched.start()
    yield watched, database, recovery
    await watched.stop()


async def test_serving_at_start_and_pings_only_read(
    monitor: tuple[DatabaseHealth, FakeDatabase, Recovery], servicer: object
) -> None:
    watched, database, _ = monitor
    assert statuses(servicer) == (SERVING, SERVING)
    await wait_until(lambda: database.reads >= 3, 2, "pings")
    assert database.writes == 0
    assert watched.healthy


async def test_a_failed_call_turns_not_serving_then_write_probes_bring_it_back(
    monitor: tuple[DatabaseHealth, FakeDatabase, Recovery], servicer: object
) -> None:
    watched, database, recovery = monitor
    database.broken = True
    database.failed_call()
    await until_every_service(servicer, NOT_SERVING, 1, "NOT_SERVING")
    assert "a write failed" in watched.last_error or "broken" in watched.last_error
    writes = database.writes
    await wait_until(lambda: database.writes >= writes + 3, 2, "write probes")
    assert statuses(servicer) == (NOT_SERVING, NOT_SERVING)  # no flapping while broken
    database.broken = False
    await until_every_service(servicer, SERVING, 2, "SERVING again")
    assert recovery.calls == 1
    assert watched.healthy


async def test_an_idle_server_notices_an_outage_by_its_ping(
    monitor: tuple[DatabaseHealth, FakeDatabase, Recovery], servicer: object
) -> None:
    _, database, _ = monitor
    database.broken = True
    await until_every_service(servicer, NOT_SERVING, 2, "NOT_SERVING")


async def test_serving_only_once_the_catch_up_worked_too(
    monitor: tuple[DatabaseHealth, FakeDatabase, Recovery], servicer: object
) -> None:
    _, database, recovery = monitor
    database.failed_call()
    recovery.fail = True
    await wait_until(lambda: recovery.calls >= 3, 2, "catch-up attempts")
    assert statuses(servicer) == (NOT_SERVING, NOT_SERVING)
    recovery.fail = False
    await until_every_service(servicer, SERVING, 2, "SERVING again")


async def test_a_stopping_server_never_turns_serving_again(
    monitor: tuple[DatabaseHealth, FakeDatabase, Recovery], servicer: object
) -> None:
    _, database, recovery = monitor
    database.failed_call()
    await until_every_service(servicer, NOT_SERVING, 1, "NOT_SERVING")
    await servicer.enter_graceful_shutdown()  # type: ignore[attr-defined]
    await wait_until(lambda: recovery.calls >= 1, 2, "the database came back")
    assert statuses(servicer) == (NOT_SERVING, NOT_SERVING)
