"""YandexGPT (Yandex AI Studio): list models through the OpenAI-compatible API.

``GET {base}/models`` with the openai SDK, the key as the bearer token and the
folder as the ``OpenAI-Project`` header. When the listing itself is unavailable
(404/501) the documented static list is served instead; a rejected key is never
hidden behind that fallback.

Base URL convention: the OpenAI-compatible root *including* ``/v1``
(default ``https://ai.api.cloud.yandex.net/v1``).
"""

from __future__ import annotations

from collections.abc import Mapping

import openai

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers.base import ProviderFailure, classify_http_status
from stageconfig_server.providers.openai import OpenAICompatibleAdapter, error_body

DEFAULT_BASE_URL = "https://ai.api.cloud.yandex.net/v1"
"""The real OpenAI-compatible endpoint, ``/v1`` included."""

PROVIDER = "YandexGPT"

FOLDER_OPTION = "folder_id"
"""The credentials option holding the Yandex Cloud folder (model URIs need it)."""

FALLBACK_MODELS: tuple[str, ...] = (
    "yandexgpt/latest",
    "yandexgpt/rc",
    "yandexgpt-lite/latest",
    "aliceai-llm/latest",
    "qwen3-235b-a22b-fp8/latest",
    "gpt-oss-120b/latest",
    "gpt-oss-20b/latest",
    "gemma-3-27b-it/latest",
)
"""Served when the listing endpoint is unavailable (providers.md)."""

LISTING_UNAVAILABLE_STATUSES = frozenset({404, 501})
"""HTTP statuses meaning "this deployment has no model listing", not "bad key"."""

# google.rpc codes Yandex puts in its error body; they say more than the HTTP status.
_GRPC_PERMISSION_DENIED = 7
_GRPC_RESOURCE_EXHAUSTED = 8
_GRPC_UNAUTHENTICATED = 16


def classify_yandex_error(exc: openai.APIStatusError) -> tuple[ConfigStatus, StatusCause]:
    """Yandex's ``grpcCode`` first, then the HTTP status."""
    body: Mapping[str, object] = error_body(exc)
    grpc_code = body.get("grpcCode")
    message = str(body.get("message", "")).lower()
    if grpc_code == _GRPC_UNAUTHENTICATED:
        return ConfigStatus.INVALID, StatusCause.AUTH
    if grpc_code == _GRPC_PERMISSION_DENIED:
        return ConfigStatus.INVALID, StatusCause.PERMISSION
    if grpc_code == _GRPC_RESOURCE_EXHAUSTED or exc.status_code == 429:
        # Yandex reports both its quotas and its request limits as 429/8; only the
        # message tells them apart ("… quota limit exceed …").
        if "quota" in message:
            return ConfigStatus.ERROR, StatusCause.QUOTA
        return ConfigStatus.ERROR, StatusCause.RATE_LIMIT
    return classify_http_status(exc.status_code)


class YandexGptAdapter(OpenAICompatibleAdapter):
    """Lists the YandexGPT models a key can use in a folder, in Yandex's order."""

    kind = ProviderKind.YANDEX_GPT
    provider = PROVIDER
    default_base_url = DEFAULT_BASE_URL

    def classify_error(self, exc: openai.APIStatusError) -> tuple[ConfigStatus, StatusCause]:
        """Yandex's table (``classify_yandex_error``)."""
        return classify_yandex_error(exc)

    async def fetch_models(self, api_key: str, options: Mapping[str, str]) -> list[str]:
        """Model ids as Yandex returns them, or the static list if listing is unavailable.

        INVALID (PERMISSION) without a network call when the ``folder_id`` option is
        missing, since no Yandex model can be addressed without it.
        """
        folder_id = options.get(FOLDER_OPTION, "").strip()
        if not folder_id:
            raise self.failure(
                ConfigStatus.INVALID,
                StatusCause.PERMISSION,
                api_key=api_key,
                detail=f"the {FOLDER_OPTION} option is not set",
            )
        try:
            models = await self.list_compatible_models(api_key, project=folder_id)
        except ProviderFailure as failure:
            # Only an *unclassified* 404/501 means "no listing here"; a 404 that
            # carries grpcCode 16 is still a rejected key and must surface.
            if (
                failure.status is ConfigStatus.ERROR
                and failure.http_status in LISTING_UNAVAILABLE_STATUSES
            ):
                return list(FALLBACK_MODELS)
            raise
        return [m.id for m in models if isinstance(m.id, str) and m.id]


__all__ = [
    "DEFAULT_BASE_URL",
    "FALLBACK_MODELS",
    "FOLDER_OPTION",
    "LISTING_UNAVAILABLE_STATUSES",
    "YandexGptAdapter",
    "classify_yandex_error",
]
