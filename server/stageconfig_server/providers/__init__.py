"""Provider adapters: per provider kind, list the models a key can use or say why not.

``build_adapters`` gives one adapter per kind; each raises only ``ProviderFailure``.
"""

from stageconfig_server.providers.base import (
    DEFAULT_TIMEOUT_SECONDS,
    ProviderAdapter,
    ProviderCredentials,
    ProviderFailure,
)
from stageconfig_server.providers.gemini import GeminiAdapter
from stageconfig_server.providers.openai import OpenAIAdapter
from stageconfig_server.providers.pika import PikaAdapter
from stageconfig_server.providers.registry import (
    BASE_URL_ENV,
    DEFAULT_BASE_URLS,
    build_adapters,
)
from stageconfig_server.providers.speechkit import SpeechKitAdapter
from stageconfig_server.providers.suno import SunoAdapter
from stageconfig_server.providers.yandex_gpt import YandexGptAdapter

__all__ = [
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
