"""GeminiAdapter (google-genai) against the fake Generative Language API."""

from __future__ import annotations

import pytest

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers import GeminiAdapter, ProviderCredentials, ProviderFailure
from stageconfig_server.providers.gemini import DEFAULT_BASE_URL
from tests.fakes.provider_server import GEMINI_NON_GENERATE_MODEL, FakeProviders

from .conftest import ADAPTER_TIMEOUT, SECRET_KEY


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


async def test_key_goes_in_header_never_in_the_url(
    adapter: GeminiAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    await adapter.list_models(credentials)
    for request in fake.requests:
        assert request.header("x-goog-api-key") == SECRET_KEY
        assert "key" not in request.query  # URLs end up in access logs


async def test_drops_models_without_generate_content(
    adapter: GeminiAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    fake.set_models(ProviderKind.GEMINI, ["gemini-2.0-flash"])
    assert await adapter.list_models(credentials) == ["gemini-2.0-flash"]
    assert GEMINI_NON_GENERATE_MODEL not in await adapter.list_models(credentials)


async def test_no_generate_content_model_is_upstream_error(
    adapter: GeminiAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    fake.set_models(ProviderKind.GEMINI, [])
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(credentials)
    assert (caught.value.status, caught.value.cause) == (ConfigStatus.ERROR, StatusCause.UPSTREAM)


@pytest.mark.parametrize(
    ("failure", "status", "cause", "http_status"),
    [
        ("invalid_key", ConfigStatus.INVALID, StatusCause.AUTH, 400),
        ("permission", ConfigStatus.INVALID, StatusCause.PERMISSION, 403),
        ("region", ConfigStatus.ERROR, StatusCause.REGION, 400),
        ("quota", ConfigStatus.ERROR, StatusCause.QUOTA, 429),
        ("rate_limit", ConfigStatus.ERROR, StatusCause.RATE_LIMIT, 429),
        ("server_error", ConfigStatus.ERROR, StatusCause.UPSTREAM, 500),
        ("listing_unavailable", ConfigStatus.ERROR, StatusCause.UPSTREAM, 404),
        ("malformed", ConfigStatus.ERROR, StatusCause.UPSTREAM, None),
    ],
)
async def test_failure_table(
    adapter: GeminiAdapter,
    fake: FakeProviders,
    credentials: ProviderCredentials,
    failure: str,
    status: ConfigStatus,
    cause: StatusCause,
    http_status: int | None,
) -> None:
    fake.set_failure(ProviderKind.GEMINI, failure)
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(credentials)
    assert (caught.value.status, caught.value.cause) == (status, cause)
    assert caught.value.http_status == http_status
    assert caught.value.message.startswith("Gemini ")
    assert SECRET_KEY not in caught.value.message


async def test_rejected_key_is_invalid(adapter: GeminiAdapter, fake: FakeProviders) -> None:
    fake.reject_key("AIza-revoked")
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(ProviderCredentials("AIza-revoked", {}))
    assert (caught.value.status, caught.value.cause) == (ConfigStatus.INVALID, StatusCause.AUTH)


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


def test_default_base_url_has_no_version() -> None:
    assert GeminiAdapter().base_url == DEFAULT_BASE_URL
    assert DEFAULT_BASE_URL == "https://generativelanguage.googleapis.com"
