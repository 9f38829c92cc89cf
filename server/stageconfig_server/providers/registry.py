"""Build every provider adapter from base URLs; the env names that configure them.

Each kind's base URL comes from ``STAGECONFIG_<KIND>_BASE_URL`` (tests point them
at ``tests.fakes.provider_server.FakeProviders``); unset or empty means the real
endpoint in ``DEFAULT_BASE_URLS``. What a base URL includes differs per kind:

    OPENAI      SDK base_url with /v1       https://api.openai.com/v1
    GEMINI      host root, no API version   https://generativelanguage.googleapis.com
    YANDEX_GPT  OpenAI-compatible, with /v1 https://ai.api.cloud.yandex.net/v1
    SPEECHKIT   TTS host root (unused)      https://tts.api.cloud.yandex.net
    SUNO        sunoapi.org host root       https://api.sunoapi.org
    PIKA        fal.ai platform API root    https://api.fal.ai
"""

from __future__ import annotations

from collections.abc import Mapping

from stageconfig_server.domain import ProviderKind
from stageconfig_server.providers.adapter import AdapterBase
from stageconfig_server.providers.base import DEFAULT_TIMEOUT_SECONDS, ProviderAdapter
from stageconfig_server.providers.gemini import GeminiAdapter
from stageconfig_server.providers.openai import OpenAIAdapter
from stageconfig_server.providers.pika import PikaAdapter
from stageconfig_server.providers.speechkit import SpeechKitAdapter
from stageconfig_server.providers.suno import SunoAdapter
from stageconfig_server.providers.yandex_gpt import YandexGptAdapter

_ADAPTER_TYPES: Mapping[ProviderKind, type[AdapterBase]] = {
    adapter.kind: adapter
    for adapter in (
        OpenAIAdapter,
        GeminiAdapter,
        YandexGptAdapter,
        SpeechKitAdapter,
        SunoAdapter,
        PikaAdapter,
    )
}

BASE_URL_ENV: dict[ProviderKind, str] = {
    kind: f"STAGECONFIG_{kind.value}_BASE_URL" for kind in ProviderKind
}
"""Env var naming each kind's base URL, e.g. ``STAGECONFIG_OPENAI_BASE_URL``."""

DEFAULT_BASE_URLS: dict[ProviderKind, str] = {
    kind: adapter.default_base_url for kind, adapter in _ADAPTER_TYPES.items()
}
"""The real endpoints, used when a kind's base URL is not set."""


def build_adapters(
    base_urls: Mapping[ProviderKind, str | None],
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> dict[ProviderKind, ProviderAdapter]:
    """One adapter per ProviderKind; a kind missing from ``base_urls``, or mapped to
    None or "", talks to its real endpoint."""
    return {
        kind: make(base_urls.get(kind) or None, timeout_seconds)
        for kind, make in _ADAPTER_TYPES.items()
    }


__all__ = ["BASE_URL_ENV", "DEFAULT_BASE_URLS", "build_adapters"]
