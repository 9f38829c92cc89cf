"""OpenAIAdapter's own rule: chat models only (the shared tables: test_adapter_tables)."""

from __future__ import annotations

import pytest

from stageconfig_server.domain import ProviderKind
from stageconfig_server.providers import OpenAIAdapter, ProviderCredentials
from stageconfig_server.providers.openai import is_chat_model
from tests.fakes.provider_server import OPENAI_NON_CHAT_MODELS, FakeProviders

from .conftest import ADAPTER_TIMEOUT


@pytest.fixture
def adapter(fake: FakeProviders) -> OpenAIAdapter:
    return OpenAIAdapter(fake.base_url(ProviderKind.OPENAI), timeout_seconds=ADAPTER_TIMEOUT)


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
