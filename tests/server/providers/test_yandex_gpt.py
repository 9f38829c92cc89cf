"""YandexGptAdapter's own behaviour: the folder, and the static list when listing is
unavailable (the shared tables: test_adapter_tables)."""

from __future__ import annotations

import pytest

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers import ProviderCredentials, ProviderFailure, YandexGptAdapter
from stageconfig_server.providers.yandex_gpt import FALLBACK_MODELS
from tests.fakes.provider_server import FakeProviders

from .conftest import ADAPTER_TIMEOUT, SECRET_KEY


@pytest.fixture
def adapter(fake: FakeProviders) -> YandexGptAdapter:
    return YandexGptAdapter(fake.base_url(ProviderKind.YANDEX_GPT), timeout_seconds=ADAPTER_TIMEOUT)


@pytest.mark.parametrize("failure", ["listing_unavailable", "not_implemented"])
async def test_static_fallback_when_listing_is_unavailable(
    adapter: YandexGptAdapter, fake: FakeProviders, credentials: ProviderCredentials, failure: str
) -> None:
    fake.set_failure(ProviderKind.YANDEX_GPT, failure)
    assert await adapter.list_models(credentials) == list(FALLBACK_MODELS)


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
