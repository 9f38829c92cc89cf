"""registry.build_adapters, the env names and the package's public surface."""

from __future__ import annotations

import stageconfig_server.providers as providers
from stageconfig_server.domain import ProviderKind
from stageconfig_server.providers import (
    BASE_URL_ENV,
    DEFAULT_BASE_URLS,
    GeminiAdapter,
    OpenAIAdapter,
    PikaAdapter,
    ProviderAdapter,
    SpeechKitAdapter,
    SunoAdapter,
    YandexGptAdapter,
    build_adapters,
)

CONCRETE = (
    OpenAIAdapter,
    GeminiAdapter,
    YandexGptAdapter,
    SpeechKitAdapter,
    SunoAdapter,
    PikaAdapter,
)


def _concrete(
    adapter: ProviderAdapter,
) -> (
    OpenAIAdapter | GeminiAdapter | YandexGptAdapter | SpeechKitAdapter | SunoAdapter | PikaAdapter
):
    # base_url/timeout_seconds are not part of the Protocol (fakes need not have them).
    assert isinstance(adapter, CONCRETE)
    return adapter


def test_one_adapter_per_kind_with_its_kind() -> None:
    adapters = build_adapters({})
    assert set(adapters) == set(ProviderKind)
    for kind, adapter in adapters.items():
        assert adapter.kind is kind


def test_unset_or_empty_base_url_means_the_real_endpoint() -> None:
    adapters = build_adapters({ProviderKind.OPENAI: None, ProviderKind.SUNO: ""})
    for kind, adapter in adapters.items():
        assert _concrete(adapter).base_url == DEFAULT_BASE_URLS[kind]


def test_base_urls_and_timeout_reach_the_adapters() -> None:
    adapters = build_adapters({ProviderKind.GEMINI: "http://127.0.0.1:1/g/"}, timeout_seconds=3)
    gemini = _concrete(adapters[ProviderKind.GEMINI])
    assert (gemini.base_url, gemini.timeout_seconds) == ("http://127.0.0.1:1/g", 3)


def test_env_names() -> None:
    assert BASE_URL_ENV == {
        ProviderKind.OPENAI: "STAGECONFIG_OPENAI_BASE_URL",
        ProviderKind.GEMINI: "STAGECONFIG_GEMINI_BASE_URL",
        ProviderKind.YANDEX_GPT: "STAGECONFIG_YANDEX_GPT_BASE_URL",
        ProviderKind.SPEECHKIT: "STAGECONFIG_SPEECHKIT_BASE_URL",
        ProviderKind.SUNO: "STAGECONFIG_SUNO_BASE_URL",
        ProviderKind.PIKA: "STAGECONFIG_PIKA_BASE_URL",
    }


def test_public_names_are_pinned() -> None:
    assert providers.__all__ == [
        "BASE_URL_ENV",
        "DEFAULT_BASE_URLS",
        "DEFAULT_TIMEOUT_SECONDS",
        "GeminiAdapter",
        "OpenAIAdapter",
        "PikaAdapter",
        "ProviderAdapter",
        "ProviderCredentials",
        "ProviderFailure",
        "SpeechKitAdapter",
        "SunoAdapter",
        "YandexGptAdapter",
        "build_adapters",
    ]
