"""The provider clients ``stageconfig.providers.ProviderFactory`` builds: one class per
API, each holding the config it was built from.

Their calls go through the stage's routes (``ProviderClient.routed``): ``generate`` and
``synthesize`` try the primary and then each fallback of ``config.fallbacks`` with
``run_with_fallback``, each route's client built by the factory that built this one.
``complete`` and ``synthesize_once`` are the single call to this client's own route.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from stageconfig._breaker import BreakerRegistry, BreakerSettings
from stageconfig._routing import run_with_fallback
from stageconfig._types import ProviderKind, Route, StageConfig

if TYPE_CHECKING:
    import httpx
    import openai
    from google import genai

DEFAULT_TIMEOUT_SECONDS = 120.0
"""Bound on one generation call: generations are slower than the server's key checks."""

YANDEX_FOLDER_OPTION = "folder_id"

C = TypeVar("C", bound="ProviderClient")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Routing:
    """How a client reaches its stage's other routes: the factory's ``create`` for a
    route's config, the breaker settings and whose breakers."""

    make: Callable[[StageConfig], ProviderClient]
    settings: BreakerSettings | None = None
    breakers: BreakerRegistry | None = None


class ProviderClient:
    """A client of one provider, for one stage's config."""

    def __init__(
        self, config: StageConfig, base_url: str, *, routing: Routing | None = None
    ) -> None:
        self.config = config
        """The config this client was built from."""
        self.base_url = base_url.rstrip("/")
        """Where its calls go."""
        self.routing = routing
        """How to reach the other routes (None: this client's route alone)."""

    @property
    def model(self) -> str:
        """The model (voice, endpoint) to use: ``config.model``."""
        return self.config.model

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.config.provider_kind.value}, "
            f"model={self.model!r}, base_url={self.base_url!r})"
        )

    def routed(self, kind: type[C], use: Callable[[C], T]) -> T:
        """``use(client)`` with the client of the primary route, then of each fallback
        (``run_with_fallback``); ``kind`` is the client class every route must build
        (ValueError otherwise: a route of the wrong provider kind)."""
        routing = self.routing
        config = self.config
        if routing is None:  # built by hand, not by the factory: its own route alone
            config = dataclasses.replace(config, fallbacks=())
            routing = Routing(lambda _: self)
        make = routing.make

        def call(route: Route) -> T:
            client = make(config.for_route(route))
            if not isinstance(client, kind):
                raise ValueError(f"a {route.provider_kind} route cannot serve {kind.__name__}")
            return use(client)

        return run_with_fallback(config, call, settings=routing.settings, breakers=routing.breakers)


class TextGenerator(ProviderClient, ABC):
    """An LLM client (the POEM stage's providers)."""

    def generate(self, prompt: str, *, system: str | None = None) -> str:
        """The model's answer to ``prompt`` (with an optional system instruction), from
        the first route of the stage that answers (``run_with_fallback``)."""
        return self.routed(
            TextGenerator,  # type: ignore[type-abstract]
            lambda client: client.complete(prompt, system=system),
        )

    @abstractmethod
    def complete(self, prompt: str, *, system: str | None = None) -> str:
        """One call to this client's own route (no fallback)."""


class OpenAICompatibleChat(TextGenerator):
    """OpenAI, or YandexGPT through its OpenAI-compatible API, via the openai SDK."""

    def __init__(
        self,
        config: StageConfig,
        base_url: str,
        sdk: openai.OpenAI,
        *,
        routing: Routing | None = None,
    ) -> None:
        super().__init__(config, base_url, routing=routing)
        self.sdk = sdk
        """The openai SDK client (shared by clients with the same key and endpoint)."""

    @property
    def model_id(self) -> str:
        """The model as the API names it (YandexGPT: ``gpt://<folder>/<model>``)."""
        if self.config.provider_kind is ProviderKind.YANDEX_GPT and "://" not in self.model:
            folder = self.config.options.get(YANDEX_FOLDER_OPTION, "")
            return f"gpt://{folder}/{self.model}"
        return self.model

    def complete(self, prompt: str, *, system: str | None = None) -> str:
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

    def __init__(
        self,
        config: StageConfig,
        base_url: str,
        sdk: genai.Client,
        *,
        routing: Routing | None = None,
    ) -> None:
        super().__init__(config, base_url, routing=routing)
        self.sdk = sdk
        """The google-genai client (shared by clients with the same key and endpoint)."""

    def complete(self, prompt: str, *, system: str | None = None) -> str:
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

    def __init__(
        self,
        config: StageConfig,
        base_url: str,
        timeout_seconds: float,
        *,
        routing: Routing | None = None,
    ) -> None:
        super().__init__(config, base_url, routing=routing)
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

    def synthesize(self, text: str) -> bytes:
        """MP3 audio of ``text`` from the first route (key) of the stage that answers
        (a key pool: credits exhausted on one key moves on to the next)."""
        return self.routed(SpeechKitClient, lambda client: client.synthesize_once(text))

    def synthesize_once(self, text: str) -> bytes:
        """One utteranceSynthesis call with this client's key and voice: the audio
        chunks of its answer (JSON lines), joined."""
        response = self.request("POST", self.SYNTHESIS_PATH, json=self.synthesis_request(text))
        audio = bytearray()
        for line in response.text.splitlines():
            if line.strip():
                chunk = json.loads(line).get("result", {}).get("audioChunk", {})
                audio += base64.b64decode(chunk.get("data", ""))
        return bytes(audio)


class SunoClient(HttpProviderClient):
    """Suno through sunoapi.org; ``model`` is a Suno version such as ``V5``."""


class PikaClient(HttpProviderClient):
    """Pika through fal.ai; ``model`` is the fal endpoint id."""

    auth_scheme = "Key"
