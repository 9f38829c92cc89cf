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
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from stageconfig._types import ProviderKind, StageConfig

if TYPE_CHECKING:
    import httpx
    import openai
    from google import genai

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

DEFAULT_TIMEOUT_SECONDS = 120.0
"""Bound on one generation call: generations are slower than the server's key checks."""

YANDEX_FOLDER_OPTION = "folder_id"
_SDK_CACHE_SIZE = 16


class ProviderClient:
    """A client of one provider, for one stage's config."""

    def __init__(self, config: StageConfig, base_url: str) -> None:
        self.config = config
        """The config this client was built from."""
        self.base_url = base_url.rstrip("/")
        """Where its calls go."""

    @property
    def model(self) -> str:
        """The model (voice, endpoint) to use: ``config.model``."""
        return self.config.model

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.config.provider_kind.value}, "
            f"model={self.model!r}, base_url={self.base_url!r})"
        )


class TextGenerator(ProviderClient, ABC):
    """An LLM client (the POEM stage's providers)."""

    @abstractmethod
    def generate(self, prompt: str, *, system: str | None = None) -> str:
        """The model's answer to ``prompt`` (with an optional system instruction)."""


class OpenAICompatibleChat(TextGenerator):
    """OpenAI, or YandexGPT through its OpenAI-compatible API, via the openai SDK."""

    def __init__(self, config: StageConfig, base_url: str, sdk: openai.OpenAI) -> None:
        super().__init__(config, base_url)
        self.sdk = sdk
        """The openai SDK client (shared by clients with the same key and endpoint)."""

    @property
    def model_id(self) -> str:
        """The model as the API names it (YandexGPT: ``gpt://<folder>/<model>``)."""
        if self.config.provider_kind is ProviderKind.YANDEX_GPT and "://" not in self.model:
            folder = self.config.options.get(YANDEX_FOLDER_OPTION, "")
            return f"gpt://{folder}/{self.model}"
        return self.model

    def generate(self, prompt: str, *, system: str | None = None) -> str:
        """One chat completion with ``config.model``."""
        messages: list[dict[str, str]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": prompt})
        response = self.sdk.chat.completions.create(
            model=self.model_id,
            messages=messages,  # type: ignore[arg-type]
        )
        return response.choices[0].message.content or ""


class GeminiChat(TextGenerator):
    """Gemini via the google-genai SDK."""

    def __init__(self, config: StageConfig, base_url: str, sdk: genai.Client) -> None:
        super().__init__(config, base_url)
        self.sdk = sdk
        """The google-genai client (shared by clients with the same key and endpoint)."""

    def generate(self, prompt: str, *, system: str | None = None) -> str:
        """One generateContent call with ``config.model``."""
        from google.genai import types

        response = self.sdk.models.generate_content(
            model=self.model,
            contents=prompt,
            config=types.GenerateContentConfig(system_instruction=system) if system else None,
        )
        return response.text or ""


class HttpProviderClient(ProviderClient):
    """A REST provider: base URL, key (in the provider's auth header) and model."""

    auth_scheme = "Bearer"

    def __init__(self, config: StageConfig, base_url: str, timeout_seconds: float) -> None:
        super().__init__(config, base_url)
        self.timeout_seconds = timeout_seconds

    @property
    def headers(self) -> dict[str, str]:
        """The auth header the provider expects."""
        return {"Authorization": f"{self.auth_scheme} {self.config.api_key}"}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call to ``base_url + path`` with the key; raises httpx errors."""
        import httpx

        headers = {**self.headers, **kwargs.pop("headers", {})}
        with httpx.Client(timeout=self.timeout_seconds) as http:
            response = http.request(method, self.base_url + path, headers=headers, **kwargs)
        response.raise_for_status()
        return response


class SpeechKitClient(HttpProviderClient):
    """Yandex SpeechKit TTS v3; ``model`` is ``voice`` or ``voice:role``."""

    auth_scheme = "Api-Key"
    SYNTHESIS_PATH = "/tts/v3/utteranceSynthesis"

    @property
    def voice(self) -> str:
        """The voice part of the model."""
        return self.model.partition(":")[0]

    @property
    def role(self) -> str | None:
        """The role part of the model, if any."""
        return self.model.partition(":")[2] or None

    def synthesis_request(self, text: str) -> dict[str, Any]:
        """The JSON body of an utteranceSynthesis call for ``text`` with this voice."""
        hints: list[dict[str, str]] = [{"voice": self.voice}]
        if self.role:
            hints.append({"role": self.role})
        return {
            "text": text,
            "hints": hints,
            "outputAudioSpec": {"containerAudio": {"containerAudioType": "MP3"}},
        }


class SunoClient(HttpProviderClient):
    """Suno through sunoapi.org; ``model`` is a Suno version such as ``V5``."""


class PikaClient(HttpProviderClient):
    """Pika through fal.ai; ``model`` is the fal endpoint id."""

    auth_scheme = "Key"


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
    ) -> ProviderClient:
        """The client for ``config.provider_kind`` (see the module docstring).

        ``env`` is where ``STAGECONFIG_<KIND>_BASE_URL`` is read (default: os.environ).
        Raises ValueError for a config whose key is masked (an admin token's view).
        """
        if config.api_key_masked:
            raise ValueError(
                f"the {config.stage_type} config carries a masked key: use a worker token"
            )
        kind = config.provider_kind
        base_url = cls.base_url(kind, env)
        if kind in (ProviderKind.OPENAI, ProviderKind.YANDEX_GPT):
            return OpenAICompatibleChat(
                config, base_url, cls._sdk(config, base_url, timeout_seconds, _openai_sdk)
            )
        if kind is ProviderKind.GEMINI:
            return GeminiChat(
                config, base_url, cls._sdk(config, base_url, timeout_seconds, _gemini_sdk)
            )
        rest: dict[ProviderKind, type[HttpProviderClient]] = {
            ProviderKind.SPEECHKIT: SpeechKitClient,
            ProviderKind.SUNO: SunoClient,
            ProviderKind.PIKA: PikaClient,
        }
        return rest[kind](config, base_url, timeout_seconds)

    @classmethod
    def text_generator(
        cls,
        config: StageConfig,
        *,
        env: Mapping[str, str] | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> TextGenerator:
        """``create`` for an LLM provider; ValueError for any other."""
        client = cls.create(config, env=env, timeout_seconds=timeout_seconds)
        if not isinstance(client, TextGenerator):
            raise ValueError(f"{config.provider_kind} is not a text generation provider")
        return client

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
    return openai.OpenAI(
        api_key=config.api_key, base_url=base_url, project=project, timeout=timeout
    )


def _gemini_sdk(config: StageConfig, base_url: str, timeout: float) -> genai.Client:
    from google import genai
    from google.genai import types

    # vertexai=False: GOOGLE_GENAI_USE_VERTEXAI must not turn this into a Vertex call.
    return genai.Client(
        vertexai=False,
        api_key=config.api_key,
        http_options=types.HttpOptions(
            base_url=base_url, api_version="v1", timeout=max(1, round(timeout * 1000))
        ),
    )


def _reset_in_child() -> None:
    ProviderFactory._lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_in_child)

__all__ = [
    "GeminiChat",
    "HttpProviderClient",
    "OpenAICompatibleChat",
    "PikaClient",
    "ProviderClient",
    "ProviderFactory",
    "SpeechKitClient",
    "SunoClient",
    "TextGenerator",
]
