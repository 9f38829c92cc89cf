"""ProviderFactory builds a real SDK client per provider, honouring the base-URL
overrides, and names config.model at generation time (against FakeProviders)."""

from __future__ import annotations

import json
from types import MappingProxyType

import pytest

from stageconfig import ConfigSource, ConfigStatus, ProviderKind, StageConfig, StageType
from stageconfig.providers import (
    GeminiChat,
    OpenAICompatibleChat,
    PikaClient,
    ProviderFactory,
    SpeechKitClient,
    SunoClient,
)
from tests.fakes.provider_server import FakeProviders


def poem(
    kind: ProviderKind, model: str, key: str = "sk-test-key-123456", **options: str
) -> StageConfig:
    return StageConfig(
        stage_type=StageType.POEM,
        provider_kind=kind,
        api_key=key,
        model=model,
        revision=1,
        status=ConfigStatus.ACTIVE,
        source=ConfigSource.DATABASE,
        options=MappingProxyType(options),
    )


@pytest.mark.parametrize(
    ("kind", "model", "options", "sdk_path", "header", "value"),
    [
        (
            ProviderKind.OPENAI,
            "gpt-4o-mini",
            {},
            "/v1/chat/completions",
            "authorization",
            "Bearer sk-test-key-123456",
        ),
        (
            ProviderKind.GEMINI,
            "gemini-2.5-pro",
            {},
            "/v1/models/gemini-2.5-pro:generateContent",
            "x-goog-api-key",
            "sk-test-key-123456",
        ),
        (
            ProviderKind.YANDEX_GPT,
            "yandexgpt-lite/latest",
            {"folder_id": "b1gfolder"},
            "/v1/chat/completions",
            "openai-project",
            "b1gfolder",
        ),
    ],
)
def test_text_generators_use_config_model_and_key(
    fake_providers: FakeProviders,
    kind: ProviderKind,
    model: str,
    options: dict[str, str],
    sdk_path: str,
    header: str,
    value: str,
) -> None:
    config = poem(kind, model, **options)
    poet = ProviderFactory.text_generator(config, env=fake_providers.env())
    assert isinstance(poet, (OpenAICompatibleChat, GeminiChat))
    text = poet.generate("Write about the sea", system="You are a poet")
    assert text.startswith(f"A poem by {model}:")
    assert "Write about the sea" in text
    (call,) = [r for r in fake_providers.requests if r.kind == kind and r.method == "POST"]
    assert call.path == sdk_path
    assert call.header(header) == value
    if kind is ProviderKind.YANDEX_GPT:
        assert json.loads(call.body)["model"] == f"gpt://b1gfolder/{model}"
    assert "sk-test-key-123456" not in repr(poet)


def test_a_model_change_reuses_the_sdk_client(fake_providers: FakeProviders) -> None:
    env = fake_providers.env()
    first = ProviderFactory.text_generator(poem(ProviderKind.OPENAI, "gpt-4o"), env=env)
    second = ProviderFactory.text_generator(poem(ProviderKind.OPENAI, "o3-mini"), env=env)
    assert isinstance(first, OpenAICompatibleChat)
    assert isinstance(second, OpenAICompatibleChat)
    assert first.sdk is second.sdk  # same key and endpoint: one connection pool
    assert second.generate("hi").startswith("A poem by o3-mini:")
    other_key = ProviderFactory.create(
        poem(ProviderKind.OPENAI, "gpt-4o", key="sk-other-99999"), env=env
    )
    assert isinstance(other_key, OpenAICompatibleChat)
    assert other_key.sdk is not first.sdk


def test_a_model_the_provider_does_not_offer_fails_at_the_provider(
    fake_providers: FakeProviders,
) -> None:
    import openai

    poet = ProviderFactory.text_generator(
        poem(ProviderKind.OPENAI, "gpt-9"), env=fake_providers.env()
    )
    with pytest.raises(openai.NotFoundError):
        poet.generate("hi")


def test_rest_providers_hold_base_url_key_and_model(fake_providers: FakeProviders) -> None:
    env = fake_providers.env()

    def make(stage: StageType, kind: ProviderKind, model: str) -> object:
        config = StageConfig(
            stage_type=stage,
            provider_kind=kind,
            api_key="rest-key-0123456789",
            model=model,
            revision=3,
            status=ConfigStatus.ACTIVE,
            source=ConfigSource.DATABASE,
        )
        return ProviderFactory.create(config, env=env)

    voice = make(StageType.VOICE, ProviderKind.SPEECHKIT, "jane:good")
    assert isinstance(voice, SpeechKitClient)
    assert (voice.voice, voice.role) == ("jane", "good")
    assert voice.headers == {"Authorization": "Api-Key rest-key-0123456789"}
    assert voice.synthesis_request("hello")["hints"] == [{"voice": "jane"}, {"role": "good"}]
    assert voice.base_url == fake_providers.base_url(ProviderKind.SPEECHKIT)

    song = make(StageType.SONG, ProviderKind.SUNO, "V5")
    assert isinstance(song, SunoClient)
    credit = song.request("GET", "/api/v1/generate/credit").json()
    assert credit["code"] == 200  # the key went where sunoapi expects it

    clip = make(StageType.CLIP, ProviderKind.PIKA, "fal-ai/pika/v2.2/text-to-video")
    assert isinstance(clip, PikaClient)
    assert clip.headers["Authorization"] == "Key rest-key-0123456789"
    assert clip.model == "fal-ai/pika/v2.2/text-to-video"

    with pytest.raises(ValueError, match="not a text generation provider"):
        ProviderFactory.text_generator(song.config, env=env)  # type: ignore[attr-defined]


def test_default_endpoints_and_masked_keys() -> None:
    assert ProviderFactory.base_url(ProviderKind.OPENAI, env={}) == "https://api.openai.com/v1"
    assert (
        ProviderFactory.base_url(
            ProviderKind.GEMINI, env={"STAGECONFIG_GEMINI_BASE_URL": "http://x/"}
        )
        == "http://x"
    )
    masked = StageConfig(
        stage_type=StageType.POEM,
        provider_kind=ProviderKind.OPENAI,
        api_key="sk-…a1b2",
        model="gpt-4o",
        revision=1,
        status=ConfigStatus.ACTIVE,
        source=ConfigSource.DATABASE,
        api_key_masked=True,
    )
    with pytest.raises(ValueError, match="masked key"):
        ProviderFactory.create(masked)
