"""Provider clients built from a stage's config: ``ProviderFactory.create(config)``.

The pattern the workers use (a task asks for the config at the moment it runs, builds
a client from it, and names ``config.model`` at generation time, so a model changed by
an admin is used from the very next call)::

    config = current_config(StageType.POEM)
    poet = ProviderFactory.text_generator(config)
    poem = poet.generate("Write a short poem about the sea")

What ``create`` returns, per provider:

    OPENAI      OpenAICompatibleChat  openai SDK, chat completions
    YANDEX_GPT  OpenAICompatibleChat  openai SDK on Yandex's OpenAI-compatible API; the
                                      folder (option ``folder_id``) as the project and in
                                      the model URI ``gpt://<folder>/<model>``
    GEMINI      GeminiChat            google-genai SDK, generateContent
    SPEECHKIT   SpeechKitClient       httpx, ``Authorization: Api-Key``; model = voice[:role]
    SUNO        SunoClient            httpx, bearer key (sunoapi.org)
    PIKA        PikaClient            httpx, ``Authorization: Key`` (fal.ai); model = endpoint

Fallback routes and key pools: ``generate`` (and SpeechKit's ``synthesize``) go
through ``run_with_fallback(config, call)``: the primary, then each of
``config.fallbacks`` while the failure is the route's (rejected key, quota or credits,
rate limit, 5xx, timeout, connection — ``_route_failures``), skipping routes whose
circuit breaker is open (``BreakerSettings``); ``AllRoutesFailed`` names every route's
failure when none answers. The SDKs never retry on their own (openai
``max_retries=0``, google-genai without retry options): the router owns the retries,
so a dead route costs one call, not three. ``ProviderFactory.with_fallback(config,
use)`` does the same for any client (``use(client)`` per route): Suno, Pika.

Endpoints: ``STAGECONFIG_<KIND>_BASE_URL`` overrides each kind's default (the same names
and conventions as the server: OpenAI-style bases include ``/v1``, Gemini's does not).
SDK clients are reused across calls while the key, endpoint and options stay the same
(connection pools survive a model change); the SDKs (and httpx) are imported only when a
client of theirs is built — install them with the ``celery`` extra.
"""

from __future__ import annotations

import collections
import hashlib
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from stageconfig._breaker import BreakerRegistry, BreakerSettings, default_registry
from stageconfig._provider_clients import (
    DEFAULT_TIMEOUT_SECONDS,
    YANDEX_FOLDER_OPTION,
    GeminiChat,
    HttpProviderClient,
    OpenAICompatibleChat,
    PikaClient,
    ProviderClient,
    Routing,
    SpeechKitClient,
    SunoClient,
    TextGenerator,
)
from stageconfig._routing import DEFAULT_BREAKER_SETTINGS, run_with_fallback
from stageconfig._types import ProviderKind, StageConfig

if TYPE_CHECKING:
    import openai
    from google import genai

T = TypeVar("T")

BASE_URL_ENV: Mapping[ProviderKind, str] = {
    kind: f"STAGECONFIG_{kind.value}_BASE_URL" for kind in ProviderKind
}
"""The environment variable overriding each kind's endpoint."""

DEFAULT_BASE_URLS: Mapping[ProviderKind, str] = {
    ProviderKind.OPENAI: "https://api.openai.com/v1",
    ProviderKind.YANDEX_GPT: "https://ai.api.cloud.yandex.net/v1",
    ProviderKind.GEMINI: "https://generativelanguage.googleapis.com",
    ProviderKind.SPEECHKIT: "https://tts.api.cloud.yandex.net",
    ProviderKind.SUNO: "https://api.sunoapi.org",
    ProviderKind.PIKA: "https://queue.fal.run",
}
"""Where each kind's calls go when no override is set (workers generate, so Pika's is
fal's queue API, not the platform API the server checks keys on)."""

_SDK_CACHE_SIZE = 16


class ProviderFactory:
    """Builds a ready client for a stage's provider from its config."""

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _sdks: ClassVar[collections.OrderedDict[tuple[Any, ...], Any]] = collections.OrderedDict()

    @classmethod
    def create(
        cls,
        config: StageConfig,
        *,
        env: Mapping[str, str] | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        breaker_settings: BreakerSettings | None = None,
        breakers: BreakerRegistry | None = None,
    ) -> ProviderClient:
        """The client for ``config.provider_kind`` (see the module docstring).

        ``env`` is where ``STAGECONFIG_<KIND>_BASE_URL`` is read (default: os.environ);
        ``timeout_seconds`` bounds one call to one route; ``breaker_settings`` and
        ``breakers`` go to ``run_with_fallback`` (defaults: ``BreakerSettings()`` and
        this process's breakers). Raises ValueError for a config whose key is masked
        (an admin token's view).
        """
        if config.api_key_masked or any(r.api_key_masked for r in config.fallbacks):
            raise ValueError(
                f"the {config.stage_type} config carries a masked key: use a worker token"
            )

        def make(route_config: StageConfig) -> ProviderClient:
            return cls._build(route_config, env, timeout_seconds, routing)

        routing = Routing(make, breaker_settings, breakers)
        return make(config)

    @classmethod
    def _build(
        cls,
        config: StageConfig,
        env: Mapping[str, str] | None,
        timeout_seconds: float,
        routing: Routing,
    ) -> ProviderClient:
        kind = config.provider_kind
        base_url = cls.base_url(kind, env)
        if kind in (ProviderKind.OPENAI, ProviderKind.YANDEX_GPT):
            sdk = cls._sdk(config, base_url, timeout_seconds, _openai_sdk)
            return OpenAICompatibleChat(config, base_url, sdk, routing=routing)
        if kind is ProviderKind.GEMINI:
            sdk = cls._sdk(config, base_url, timeout_seconds, _gemini_sdk)
            return GeminiChat(config, base_url, sdk, routing=routing)
        rest: dict[ProviderKind, type[HttpProviderClient]] = {
            ProviderKind.SPEECHKIT: SpeechKitClient,
            ProviderKind.SUNO: SunoClient,
            ProviderKind.PIKA: PikaClient,
        }
        return rest[kind](config, base_url, timeout_seconds, routing=routing)

    @classmethod
    def text_generator(
        cls,
        config: StageConfig,
        *,
        env: Mapping[str, str] | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        breaker_settings: BreakerSettings | None = None,
        breakers: BreakerRegistry | None = None,
    ) -> TextGenerator:
        """``create`` for an LLM provider (ValueError for any other): its ``generate``
        falls back along ``config.fallbacks``."""
        client = cls.create(
            config,
            env=env,
            timeout_seconds=timeout_seconds,
            breaker_settings=breaker_settings,
            breakers=breakers,
        )
        if not isinstance(client, TextGenerator):
            raise ValueError(f"{config.provider_kind} is not a text generation provider")
        return client

    @classmethod
    def with_fallback(
        cls,
        config: StageConfig,
        use: Callable[[ProviderClient], T],
        *,
        env: Mapping[str, str] | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        breaker_settings: BreakerSettings | None = None,
        breakers: BreakerRegistry | None = None,
    ) -> T:
        """``use(client)`` with each route's client in turn (``run_with_fallback``): for
        calls the clients have no routed method for (Suno, Pika: ``client.request``)."""
        client = cls.create(
            config,
            env=env,
            timeout_seconds=timeout_seconds,
            breaker_settings=breaker_settings,
            breakers=breakers,
        )
        return client.routed(ProviderClient, use)

    @staticmethod
    def base_url(kind: ProviderKind, env: Mapping[str, str] | None = None) -> str:
        """The kind's endpoint: its override in ``env`` (default os.environ), else the
        real one."""
        source = os.environ if env is None else env
        return (source.get(BASE_URL_ENV[kind]) or DEFAULT_BASE_URLS[kind]).rstrip("/")

    @classmethod
    def _sdk(
        cls,
        config: StageConfig,
        base_url: str,
        timeout: float,
        build: Callable[[StageConfig, str, float], Any],
    ) -> Any:
        # The model is not part of the key: it is named per call, so a model change
        # reuses the SDK client (and its connections). The key is kept only as a digest.
        digest = hashlib.sha256(config.api_key.encode()).hexdigest()
        key = (
            os.getpid(),  # SDK clients hold sockets: never reuse one across a fork
            config.provider_kind,
            digest,
            base_url,
            tuple(sorted(config.options.items())),
            timeout,
        )
        with cls._lock:
            sdk = cls._sdks.get(key)
            if sdk is not None:
                cls._sdks.move_to_end(key)
                return sdk
        sdk = build(config, base_url, timeout)
        with cls._lock:
            cls._sdks[key] = sdk
            while len(cls._sdks) > _SDK_CACHE_SIZE:
                cls._sdks.popitem(last=False)
        return sdk


def _openai_sdk(config: StageConfig, base_url: str, timeout: float) -> openai.OpenAI:
    import openai

    project = None
    if config.provider_kind is ProviderKind.YANDEX_GPT:
        project = config.options.get(YANDEX_FOLDER_OPTION) or None
    # max_retries=0: retrying is the router's job (the next route, not the same one).
    return openai.OpenAI(
        api_key=config.api_key,
        base_url=base_url,
        project=project,
        timeout=timeout,
        max_retries=0,
    )


def _gemini_sdk(config: StageConfig, base_url: str, timeout: float) -> genai.Client:
    from google import genai
    from google.genai import types

    # vertexai=False: GOOGLE_GENAI_USE_VERTEXAI must not turn this into a Vertex call.
    return genai.Client(
        vertexai=False,
        api_key=config.api_key,
        # No retry_options: google-genai then tries once; the router owns the retries.
        http_options=types.HttpOptions(
            base_url=base_url, api_version="v1", timeout=max(1, round(timeout * 1000))
        ),
    )


def _reset_in_child() -> None:
    ProviderFactory._lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_in_child)

__all__ = [
    "DEFAULT_BREAKER_SETTINGS",
    "BreakerRegistry",
    "BreakerSettings",
    "GeminiChat",
    "HttpProviderClient",
    "OpenAICompatibleChat",
    "PikaClient",
    "ProviderClient",
    "ProviderFactory",
    "SpeechKitClient",
    "SunoClient",
    "TextGenerator",
    "default_registry",
    "run_with_fallback",
]
