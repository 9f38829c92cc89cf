"""OpenAI: list the chat models a key can use through the official SDK.

Also home of ``OpenAICompatibleAdapter``, the OpenAI-compatible listing that the
YandexGPT adapter builds on with its own error table.

Base URL convention: the SDK's ``base_url`` *including* ``/v1``
(default ``https://api.openai.com/v1``); the listing is ``GET {base}/models``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, cast

import openai
from openai.types import Model

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers.adapter import AdapterBase, http_detail
from stageconfig_server.providers.base import classify_http_status
from stageconfig_server.providers.guard import MAX_MODELS, BadModelList

DEFAULT_BASE_URL = "https://api.openai.com/v1"
"""The real endpoint, ``/v1`` included (the SDK's own convention)."""

PROVIDER = "OpenAI"

# Nothing in /v1/models says what a model does (providers.md), so chat models are
# recognised by name: an allow-list of chat families, then a deny-list of the
# specialised variants that share those prefixes (gpt-4o-audio-preview, …).
_CHAT_ALLOW = re.compile(r"^(gpt-|o\d|chatgpt-)")
_CHAT_DENY = re.compile(r"audio|realtime|transcribe|tts|image|embedding|moderation|search|instruct")


def is_chat_model(model_id: str) -> bool:
    """Whether ``model_id`` names an OpenAI chat model by the providers.md rule."""
    return bool(_CHAT_ALLOW.match(model_id)) and not _CHAT_DENY.search(model_id)


def error_body(exc: openai.APIStatusError) -> Mapping[str, object]:
    """The provider's ``error`` object (the SDK already unwrapped ``{"error": …}``)."""
    return exc.body if isinstance(exc.body, Mapping) else {}


def error_detail(exc: openai.APIStatusError) -> str:
    """``HTTP 401: <provider message>`` — what the admin sees in parentheses."""
    message = error_body(exc).get("message")
    said = message if isinstance(message, str) and message.strip() else ""
    return http_detail(exc.status_code, said)


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


class OpenAICompatibleAdapter(AdapterBase):
    """``GET {base_url}/models`` with the openai SDK, retries off.

    Subclasses choose the error table (``classify_error``) and what to keep of the list.
    """

    timeout_errors = (openai.APITimeoutError,)
    transport_errors = (openai.APIConnectionError,)
    # ValueError: the SDK hands a body that is not JSON straight to json.loads.
    unreadable_errors = (openai.OpenAIError, ValueError)

    def classify_error(self, exc: openai.APIStatusError) -> tuple[ConfigStatus, StatusCause]:
        """Turn an HTTP error from the API into (status, cause)."""
        return classify_openai_error(exc)

    def transport_cause(self, exc: BaseException) -> BaseException:
        """The SDK wraps the transport's exception; name the one that says what failed."""
        return exc.__cause__ or exc

    async def list_compatible_models(self, api_key: str, project: str | None = None) -> list[Model]:
        """Every model the listing offers; an HTTP error as ProviderFailure.

        The SDK's synchronous client runs in a worker thread (``off_loop``) through the
        guarded transport: one origin, a capped body, parsing off the event loop; more
        than ``guard.MAX_MODELS`` entries refuse the list before any is looked at.
        """
        try:
            models = await self.off_loop(lambda: self._list_blocking(api_key, project))
        except openai.APIStatusError as exc:
            status, cause = self.classify_error(exc)
            raise self.failure(
                status,
                cause,
                api_key=api_key,
                detail=error_detail(exc),
                http_status=exc.status_code,
            ) from exc
        if len(models) > MAX_MODELS:
            raise BadModelList(f"more than {MAX_MODELS} models offered; none were stored")
        return models

    def _list_blocking(self, api_key: str, project: str | None) -> list[Model]:
        with openai.OpenAI(
            api_key=api_key,
            base_url=self.base_url,
            project=project,
            max_retries=0,
            timeout=self.timeout_seconds,
            # openai 3.x types its client as httpx2 but takes a legacy httpx client too
            # (its own is_legacy_httpx_sync_client check); the guard is an httpx one.
            http_client=cast(Any, self.sync_http_client()),
        ) as client:
            return list(client.models.list())


class OpenAIAdapter(OpenAICompatibleAdapter):
    """Lists the chat models an OpenAI key can use, newest first.

    Order: by the listing's ``created`` timestamp, newest first (ties by id), so the
    admin's drop-down starts with the current generation.
    """

    kind = ProviderKind.OPENAI
    provider = PROVIDER
    default_base_url = DEFAULT_BASE_URL

    async def fetch_models(self, api_key: str, options: Mapping[str, str]) -> list[str]:
        """The chat models this key can use, newest first."""
        models = await self.list_compatible_models(api_key)
        newest_first = sorted(
            (m for m in models if isinstance(m.id, str) and is_chat_model(m.id)),
            key=lambda m: (-(m.created if isinstance(m.created, int) else 0), m.id),
        )
        return [m.id for m in newest_first]


__all__ = [
    "DEFAULT_BASE_URL",
    "OpenAIAdapter",
    "OpenAICompatibleAdapter",
    "classify_openai_error",
    "error_body",
    "error_detail",
    "is_chat_model",
]
