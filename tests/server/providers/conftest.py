"""Fixtures for the provider adapter tests: the real fake server, a dead port, a key."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from stageconfig_server.domain import ProviderKind
from stageconfig_server.providers import ProviderAdapter, ProviderCredentials, build_adapters
from tests.fakes.provider_server import FakeProviders

SECRET_KEY = "sk-test-SECRET-0123456789abcdef"
"""Distinctive enough that finding it in a message can only mean a leak."""

FOLDER_ID = "b1gfakefolder0000"

ADAPTER_TIMEOUT = 10.0
"""Bound for calls that get an answer: generous, so a loaded CI machine never trips it."""
HANG_TIMEOUT = 0.5
"""Bound for the "slower than the timeout" cases, where the timeout is the point."""


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    """A fresh fake for every test (it starts in about a millisecond)."""
    with FakeProviders() as server:
        yield server


@pytest.fixture
def adapters(fake: FakeProviders) -> dict[ProviderKind, ProviderAdapter]:
    """Every adapter pointed at the fake."""
    return build_adapters(fake.base_urls(), timeout_seconds=ADAPTER_TIMEOUT)


@pytest.fixture
def credentials() -> ProviderCredentials:
    """The test key, with the folder YandexGPT needs."""
    return ProviderCredentials(api_key=SECRET_KEY, options={"folder_id": FOLDER_ID})


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port that refuses connections: bound (so nobody else gets it) but not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()
