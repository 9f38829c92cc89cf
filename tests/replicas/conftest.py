"""Fixtures for replica tests: a fresh PostgreSQL database and three server processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.fakes.provider_server import FakeProviders
from tests.support.postgres import temporary_database
from tests.support.servers import ServerProcess, server_env


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_database() as url:
        yield url


@pytest.fixture
def replicas(
    pg_url: str, tmp_path: Path, fake_providers: FakeProviders
) -> Iterator[list[ServerProcess]]:
    env = server_env(tmp_path / "unused.db", fake_providers, STAGECONFIG_DATABASE_URL=pg_url)
    servers = [ServerProcess(env) for _ in range(3)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()
