"""OpenAIAdapter against the fake OpenAI API."""

from __future__ import annotations

import pytest

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers import OpenAIAdapter, ProviderCredentials, ProviderFailure
from stageconfig_server.providers.openai import DEFAULT_BASE_URL, is_chat_model
from tests.fakes.provider_server import OPENAI_NON_CHAT_MODELS, FakeProviders

from .conftest import ADAPTER_TIMEOUT, SECRET_KEY


@pytest.fixture
def adapter(fake: FakeProviders) -> OpenAIAdapter:
    return OpenAIAdapter(fake.base_url(ProviderKind.OPENAI), timeout_seconds=ADAPTER_TIMEOUT)


async def test_lists_chat_models_newest_first(
    adapter: OpenAIAdapter, credentials: ProviderCredentials
) -> None:
    # The fake gives later-listed models a later `created`; the adapter sorts on it.
    assert await adapter.list_models(credentials) == ["o3-mini", "gpt-4o-mini", "gpt-4o"]


async def test_key_goes_as_bearer_token_to_v1_models(
    adapter: OpenAIAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    await adapter.list_models(credentials)
    (request,) = fake.requests
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert request.header("Authorization") == f"Bearer {SECRET_KEY}"


async def test_filters_out_every_non_chat_model(
    adapter: OpenAIAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    fake.set_models(ProviderKind.OPENAI, ["gpt-4.1", "o1", "chatgpt-4o-latest", "davinci-002"])
    models = await adapter.list_models(credentials)
    assert sorted(models) == ["chatgpt-4o-latest", "gpt-4.1", "o1"]
    assert not set(models) & set(OPENAI_NON_CHAT_MODELS)


@pytest.mark.parametrize(
    ("model_id", "chat"),
    [
        ("gpt-4o", True),
        ("o4-mini", True),
        ("chatgpt-4o-latest", True),
        ("gpt-4o-realtime-preview", False),
        ("gpt-4o-mini-transcribe", False),
        ("gpt-image-1", False),
        ("gpt-3.5-turbo-instruct", False),
        ("omni-moderation-latest", False),
        ("text-embedding-3-large", False),
        ("whisper-1", False),
    ],
)
def test_chat_model_rule(model_id: str, chat: bool) -> None:
    assert is_chat_model(model_id) is chat


async def test_only_non_chat_models_is_upstream_error(
    adapter: OpenAIAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    fake.set_models(ProviderKind.OPENAI, [])
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(credentials)
    assert (caught.value.status, caught.value.cause) == (ConfigStatus.ERROR, StatusCause.UPSTREAM)
    assert "no usable model" in caught.value.message


@pytest.mark.parametrize(
    ("failure", "status", "cause", "http_status"),
    [
        ("invalid_key", ConfigStatus.INVALID, StatusCause.AUTH, 401),
        ("permission", ConfigStatus.INVALID, StatusCause.PERMISSION, 403),
        ("region", ConfigStatus.ERROR, StatusCause.REGION, 403),
        ("quota", ConfigStatus.ERROR, StatusCause.QUOTA, 429),
        ("rate_limit", ConfigStatus.ERROR, StatusCause.RATE_LIMIT, 429),
        ("server_error", ConfigStatus.ERROR, StatusCause.UPSTREAM, 500),
        ("listing_unavailable", ConfigStatus.ERROR, StatusCause.UPSTREAM, 404),
        ("malformed", ConfigStatus.ERROR, StatusCause.UPSTREAM, None),
    ],
)
async def test_failure_table(
    adapter: OpenAIAdapter,
    fake: FakeProviders,
    credentials: ProviderCredentials,
    failure: str,
    status: ConfigStatus,
    cause: StatusCause,
    http_status: int | None,
) -> None:
    fake.set_failure(ProviderKind.OPENAI, failure)
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(credentials)
    assert (caught.value.status, caught.value.cause) == (status, cause)
    assert caught.value.http_status == http_status
    assert caught.value.message.startswith("OpenAI ")
    assert SECRET_KEY not in caught.value.message


async def test_rejected_key_fails_while_others_work(
    adapter: OpenAIAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    fake.reject_key("sk-revoked")
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(ProviderCredentials("sk-revoked", {}))
    assert caught.value.status is ConfigStatus.INVALID
    assert "sk-revoked" not in caught.value.message  # the fake echoed it back
    assert await adapter.list_models(credentials)


def test_default_base_url_includes_v1() -> None:
    assert OpenAIAdapter().base_url == DEFAULT_BASE_URL == "https://api.openai.com/v1"
