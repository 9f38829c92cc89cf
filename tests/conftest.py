"""Fixtures every test can use: a FakeProviders server, a real in-process stageconfig
server on port 0 with a temp SQLite database, and a gRPC stub connected to it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import StageConfigApp
from tests.fakes.provider_server import FakeProviders
from tests.support.servers import start_app

# Tests run from a temp cwd-independent environment: a developer's .env must not leak in.
os.environ.pop("ADMIN_SECRET_KEY", None)


@pytest.fixture(scope="session")
def _fake_providers_server() -> Iterator[FakeProviders]:
    with FakeProviders() as fake:
        yield fake


@pytest.fixture
def fake_providers(_fake_providers_server: FakeProviders) -> Iterator[FakeProviders]:
    """A real HTTP server speaking every provider's wire format, reset for each test."""
    _fake_providers_server.reset()
    yield _fake_providers_server
    _fake_providers_server.reset()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh SQLite database file path."""
    return tmp_path / "stageconfig.db"


@pytest.fixture
async def app(db_path: Path, fake_providers: FakeProviders) -> AsyncIterator[StageConfigApp]:
    """A started in-process server with no legacy settings and the sync off."""
    started = await start_app(db_path, fake_providers)
    try:
        yield started
    finally:
        await started.stop(grace=1)


@pytest.fixture
async def stub(app: StageConfigApp) -> AsyncIterator[pbg.StageConfigServiceStub]:
    """An async stub connected to ``app``."""
    async with grpc.aio.insecure_channel(app.target) as channel:
        yield pbg.StageConfigServiceStub(channel)
