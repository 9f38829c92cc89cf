"""GeminiAdapter's own behaviour: pages, generateContent only, a pinned API version (the
shared tables: test_adapter_tables)."""

from __future__ import annotations

import pytest

from stageconfig_server.domain import ProviderKind
from stageconfig_server.providers import GeminiAdapter, ProviderCredentials
from tests.fakes.provider_server import GEMINI_NON_GENERATE_MODEL, FakeProviders

from .conftest import ADAPTER_TIMEOUT


@pytest.fixture
def adapter(fake: FakeProviders) -> GeminiAdapter:
    return GeminiAdapter(fake.base_url(ProviderKind.GEMINI), timeout_seconds=ADAPTER_TIMEOUT)


async def test_lists_generate_content_models_over_two_pages(
    adapter: GeminiAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    assert await adapter.list_models(credentials) == ["gemini-2.5-flash", "gemini-2.5-pro"]
    first, second = fake.requests
    assert first.path == second.path == "/v1/models"
    assert "pageToken" not in first.query
    assert second.query["pageToken"]  # the second page was asked for with the token


async def test_follows_every_page(
    adapter: GeminiAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    names = [f"gemini-test-{i}" for i in range(6)]
    fake.set_models(ProviderKind.GEMINI, names)
    assert await adapter.list_models(credentials) == names
    assert len(fake.requests) == 4  # 7 models (with the embedding one), 2 per page


async def test_drops_models_without_generate_content(
    adapter: GeminiAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    fake.set_models(ProviderKind.GEMINI, ["gemini-2.0-flash"])
    assert await adapter.list_models(credentials) == ["gemini-2.0-flash"]
    assert GEMINI_NON_GENERATE_MODEL not in await adapter.list_models(credentials)


async def test_api_version_env_does_not_change_the_path(
    adapter: GeminiAdapter,
    fake: FakeProviders,
    credentials: ProviderCredentials,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOOGLE_GENAI_API_VERSION", "beta")
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    await adapter.list_models(credentials)
    assert {r.path for r in fake.requests} == {"/v1/models"}
