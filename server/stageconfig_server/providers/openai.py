"""OpenAI: list the chat models a key can use through the official SDK.

Also home of the OpenAI-compatible listing (``list_compatible_models``) that the
YandexGPT adapter reuses with its own error table.

Base URL convention: the SDK's ``base_url`` *including* ``/v1``
(default ``https://api.openai.com/v1``); the listing is ``GET {base}/models``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping

import openai
from openai.types import Model

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers.base import (
    DEFAULT_TIMEOUT_SECONDS,
    ProviderCredentials,
    classify_http_status,
    no_usable_model,
    provider_failure,
    require_key,
    timed_out,
    unexpected_error,
    unreachable,
    unreadable_answer,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
"""The real endpoint, ``/v1`` included (the SDK's own convention)."""

PROVIDER = "OpenAI"

# Nothing in /v1/models says what a model does (providers.md), so chat models are
# recognised by name: an allow-list of chat families, then a deny-list of the
# specialised variants that share those prefixes (gpt-4o-audio-preview, …).
_CHAT_ALLOW = re.compile(r"^(gpt-|o\d|chatgpt-)")
_CHAT_DENY = re.compile(r"audio|realtime|transcribe|tts|image|embedding|moderation|search|instruct")

ErrorClassifier = Callable[[openai.APIStatusError], tuple[ConfigStatus, StatusCause]]
"""Turns an HTTP error from an OpenAI-compatible API into (status, cause)."""


def is_chat_model(model_id: str) -> bool:
    """Whether ``model_id`` names an OpenAI chat model by the providers.md rule."""
    return bool(_CHAT_ALLOW.match(model_id)) and not _CHAT_DENY.search(model_id)


def error_body(exc: openai.APIStatusError) -> Mapping[str, object]:
    """The provider's ``error`` object (the SDK already unwrapped ``{"error": …}``)."""
    return exc.body if isinstance(exc.body, Mapping) else {}


def error_detail(exc: openai.APIStatusError) -> str:
    """``HTTP 401: <provider message>`` — what the admin sees in parentheses."""
    message = error_body(exc).get("message")
    if isinstance(message, str) and message.strip():
        return f"HTTP {exc.status_code}: {message}"
    return f"HTTP {exc.status_code}"


def classify_openai_error(exc: openai.APIStatusError) -> tuple[ConfigStatus, StatusCause]:
    """OpenAI's own codes first (providers.md), the generic status table after."""
    body = error_body(exc)
    code, kind = body.get("code"), body.get("type")
    if exc.status_code == 403 and code == "unsupported_country_region_territory":
        return ConfigStatus.ERROR, StatusCause.REGION
    if exc.status_code == 429:
        if "insufficient_quota" in (code, kind):
            return ConfigStatus.ERROR, StatusCause.QUOTA
        return ConfigStatus.ERROR, StatusCause.RATE_LIMIT
    return classify_http_status(exc.status_code)


async def list_compatible_models(
    *,
    provider: str,
    base_url: str,
    api_key: str,
    timeout_seconds: float,
    classify: ErrorClassifier,
    project: str | None = None,
) -> list[Model]:
    """``GET {base_url}/models`` with the openai SDK; every failure as ProviderFailure.

    Retries are off (a key check that fails is reported, not hammered) and the whole
    call, connect to last byte, is bounded by ``timeout_seconds``.
    """
    client = openai.AsyncOpenAI(
        api_key=api_key,
        base_url=base_url,
        project=project,
        max_retries=0,
        timeout=timeout_seconds,
    )
    try:
        # The SDK timeout bounds each read; asyncio.timeout bounds the total, so a
        # server that trickles bytes cannot hold a key check open forever.
        async with asyncio.timeout(timeout_seconds):
            return [model async for model in client.models.list()]
    except openai.APIStatusError as exc:
        status, cause = classify(exc)
        raise provider_failure(
            status,
            cause,
            provider=provider,
            api_key=api_key,
            detail=error_detail(exc),
            http_status=exc.status_code,
        ) from exc
    except (openai.APITimeoutError, TimeoutError) as exc:
        raise timed_out(
            provider=provider, api_key=api_key, timeout_seconds=timeout_seconds
        ) from exc
    except openai.APIConnectionError as exc:
        # The SDK wraps the transport's exception; name the one that says what failed.
        raise unreachable(
            provider=provider, api_key=api_key, where=base_url, exc=exc.__cause__ or exc
        ) from exc
    except (openai.OpenAIError, ValueError) as exc:
        # ValueError: the SDK hands a body that is not JSON straight to json.loads.
        raise unreadable_answer(provider=provider, api_key=api_key, exc=exc) from exc
    except Exception as exc:
        raise unexpected_error(provider=provider, api_key=api_key, exc=exc) from exc
    finally:
        await client.close()


class OpenAIAdapter:
    """Lists the chat models an OpenAI key can use, newest first.

    Order: by the listing's ``created`` timestamp, newest first (ties by id), so the
    admin's drop-down starts with the current generation.
    """

    kind: ProviderKind = ProviderKind.OPENAI

    def __init__(
        self, base_url: str | None = None, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.timeout_seconds = timeout_seconds

    async def list_models(self, credentials: ProviderCredentials) -> list[str]:
        """The chat models this key can use; raises ProviderFailure."""
        api_key = require_key(credentials, provider=PROVIDER)
        models = await list_compatible_models(
            provider=PROVIDER,
            base_url=self.base_url,
            api_key=api_key,
            timeout_seconds=self.timeout_seconds,
            classify=classify_openai_error,
        )
        newest_first = sorted(
            (m for m in models if isinstance(m.id, str) and is_chat_model(m.id)),
            key=lambda m: (-(m.created if isinstance(m.created, int) else 0), m.id),
        )
        ids = list(dict.fromkeys(m.id for m in newest_first))
        if not ids:
            raise no_usable_model(provider=PROVIDER, api_key=api_key)
        return ids


__all__ = [
    "DEFAULT_BASE_URL",
    "ErrorClassifier",
    "OpenAIAdapter",
    "classify_openai_error",
    "error_body",
    "error_detail",
    "is_chat_model",
    "list_compatible_models",
]
