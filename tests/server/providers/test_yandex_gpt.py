"""YandexGptAdapter against the fake OpenAI-compatible Yandex AI Studio API."""

from __future__ import annotations

import pytest

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers import ProviderCredentials, ProviderFailure, YandexGptAdapter
from stageconfig_server.providers.yandex_gpt import DEFAULT_BASE_URL, FALLBACK_MODELS
from tests.fakes.provider_server import FakeProviders

from .conftest import ADAPTER_TIMEOUT, FOLDER_ID, SECRET_KEY


@pytest.fixture
def adapter(fake: FakeProviders) -> YandexGptAdapter:
    return YandexGptAdapter(fake.base_url(ProviderKind.YANDEX_GPT), timeout_seconds=ADAPTER_TIMEOUT)


async def test_lists_models_as_yandex_returns_them(
    adapter: YandexGptAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    offered = [f"gpt://{FOLDER_ID}/yandexgpt/rc", "yandexgpt/latest"]
    fake.set_models(ProviderKind.YANDEX_GPT, offered)
    assert await adapter.list_models(credentials) == offered


async def test_key_as_bearer_and_folder_as_openai_project(
    adapter: YandexGptAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    await adapter.list_models(credentials)
    (request,) = fake.requests
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert request.header("Authorization") == f"Bearer {SECRET_KEY}"
    assert request.header("OpenAI-Project") == FOLDER_ID


@pytest.mark.parametrize("failure", ["listing_unavailable", "not_implemented"])
async def test_static_fallback_when_listing_is_unavailable(
    adapter: YandexGptAdapter, fake: FakeProviders, credentials: ProviderCredentials, failure: str
) -> None:
    fake.set_failure(ProviderKind.YANDEX_GPT, failure)
    assert await adapter.list_models(credentials) == list(FALLBACK_MODELS)


@pytest.mark.parametrize(
    ("failure", "status", "cause", "http_status"),
    [
        ("invalid_key", ConfigStatus.INVALID, StatusCause.AUTH, 401),
        ("permission", ConfigStatus.INVALID, StatusCause.PERMISSION, 403),
        ("quota", ConfigStatus.ERROR, StatusCause.QUOTA, 429),
        ("rate_limit", ConfigStatus.ERROR, StatusCause.RATE_LIMIT, 429),
        ("server_error", ConfigStatus.ERROR, StatusCause.UPSTREAM, 500),
        ("malformed", ConfigStatus.ERROR, StatusCause.UPSTREAM, None),
    ],
)
async def test_failure_table_never_falls_back(
    adapter: YandexGptAdapter,
    fake: FakeProviders,
    credentials: ProviderCredentials,
    failure: str,
    status: ConfigStatus,
    cause: StatusCause,
    http_status: int | None,
) -> None:
    fake.set_failure(ProviderKind.YANDEX_GPT, failure)
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(credentials)
    assert (caught.value.status, caught.value.cause) == (status, cause)
    assert caught.value.http_status == http_status
    assert SECRET_KEY not in caught.value.message  # the fake's 401 echoes the key


async def test_rejected_key_is_invalid_not_hidden_by_fallback(
    adapter: YandexGptAdapter, fake: FakeProviders
) -> None:
    fake.reject_key("AQVN-revoked")
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(ProviderCredentials("AQVN-revoked", {"folder_id": FOLDER_ID}))
    assert (caught.value.status, caught.value.cause) == (ConfigStatus.INVALID, StatusCause.AUTH)
    assert "AQVN-revoked" not in caught.value.message


async def test_missing_folder_is_invalid_without_a_request(
    adapter: YandexGptAdapter, fake: FakeProviders
) -> None:
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(ProviderCredentials(SECRET_KEY, {}))
    assert (caught.value.status, caught.value.cause) == (
        ConfigStatus.INVALID,
        StatusCause.PERMISSION,
    )
    assert "folder_id" in caught.value.message
    assert fake.requests == []


async def test_empty_listing_is_upstream_error(
    adapter: YandexGptAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    fake.set_models(ProviderKind.YANDEX_GPT, [])
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(credentials)
    assert (caught.value.status, caught.value.cause) == (ConfigStatus.ERROR, StatusCause.UPSTREAM)


def test_fallback_list_is_the_documented_one() -> None:
    assert FALLBACK_MODELS == (
        "yandexgpt/latest",
        "yandexgpt/rc",
        "yandexgpt-lite/latest",
        "aliceai-llm/latest",
        "qwen3-235b-a22b-fp8/latest",
        "gpt-oss-120b/latest",
        "gpt-oss-20b/latest",
        "gemma-3-27b-it/latest",
    )
    assert YandexGptAdapter().base_url == DEFAULT_BASE_URL == "https://ai.api.cloud.yandex.net/v1"
