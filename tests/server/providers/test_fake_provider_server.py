"""The FakeProviders server itself: lifecycle, configuration errors, hang release."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers import ProviderCredentials, ProviderFailure, SunoAdapter
from stageconfig_server.providers.registry import BASE_URL_ENV
from tests.fakes.provider_server import FakeProviders

from .conftest import SECRET_KEY


def test_starts_fast_and_serves_every_prefix() -> None:
    started = time.monotonic()
    with FakeProviders() as fake:
        assert time.monotonic() - started < 0.1
        assert set(fake.base_urls()) == set(ProviderKind)
        assert fake.env() == {BASE_URL_ENV[k]: fake.base_url(k) for k in ProviderKind}
        assert fake.base_url(ProviderKind.OPENAI).endswith("/openai/v1")
        assert fake.base_url(ProviderKind.GEMINI).endswith("/gemini")


def test_base_url_needs_a_started_server() -> None:
    with pytest.raises(RuntimeError):
        FakeProviders().base_url(ProviderKind.OPENAI)


def test_rejects_failures_a_kind_cannot_have(fake: FakeProviders) -> None:
    with pytest.raises(ValueError, match="region"):
        fake.set_failure(ProviderKind.SUNO, "region")
    with pytest.raises(ValueError, match="static"):
        fake.set_models(ProviderKind.PIKA, ["x"])


def test_reset_restores_defaults(fake: FakeProviders) -> None:
    fake.set_failure(ProviderKind.OPENAI, "server_error")
    fake.reject_key("k")
    httpx.get(fake.base_url(ProviderKind.OPENAI) + "/models")
    fake.reset()
    assert fake.requests == []
    response = httpx.get(
        fake.base_url(ProviderKind.OPENAI) + "/models", headers={"Authorization": "Bearer k"}
    )
    assert response.status_code == 200


async def test_stop_releases_a_hung_request_promptly() -> None:
    fake = FakeProviders().start()
    fake.set_failure(ProviderKind.SUNO, "hang")
    adapter = SunoAdapter(fake.base_url(ProviderKind.SUNO), timeout_seconds=30)
    pending = asyncio.create_task(adapter.list_models(ProviderCredentials(SECRET_KEY, {})))
    assert await asyncio.to_thread(fake.wait_for_requests, 1, 5.0)
    started = time.monotonic()
    await asyncio.to_thread(fake.stop)
    with pytest.raises(ProviderFailure) as caught:
        await pending
    assert time.monotonic() - started < 5  # not the 30 s timeout
    assert (caught.value.status, caught.value.cause) == (ConfigStatus.ERROR, StatusCause.NETWORK)


async def test_clearing_a_hang_releases_waiting_requests(fake: FakeProviders) -> None:
    fake.set_failure(ProviderKind.SUNO, "hang")
    adapter = SunoAdapter(fake.base_url(ProviderKind.SUNO), timeout_seconds=30)
    pending = asyncio.create_task(adapter.list_models(ProviderCredentials(SECRET_KEY, {})))
    assert await asyncio.to_thread(fake.wait_for_requests, 1, 5.0)
    fake.set_failure(ProviderKind.SUNO, None)
    with pytest.raises(ProviderFailure):
        await asyncio.wait_for(pending, timeout=5)
    assert await adapter.list_models(ProviderCredentials(SECRET_KEY, {}))
