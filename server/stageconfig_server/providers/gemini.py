"""Gemini (Google AI Studio): list the generateContent models a key can use.

Uses google-genai's async pager over ``GET {base}/v1/models`` (all pages), keeps
models whose ``supported_actions`` include ``generateContent`` and strips the
``models/`` prefix.

Base URL convention: the host root *without* an API version
(default ``https://generativelanguage.googleapis.com``); the SDK adds ``/v1``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import httpx
import httpx2
from google import genai
from google.genai import errors, types

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers.adapter import AdapterBase, http_detail
from stageconfig_server.providers.base import classify_http_status
from stageconfig_server.providers.guard import MAX_MODELS, BadModelList, shared_tls_context

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
"""The real endpoint, without an API version."""

API_VERSION = "v1"
"""Pinned to the SDK's default so GOOGLE_GENAI_API_VERSION in the environment cannot
change what is listed, and the list matches what a default worker client can call."""

PAGE_SIZE = 1000
"""The API's maximum: one round trip for the usual ~50 models; the pager follows
``nextPageToken`` for the rest."""

PROVIDER = "Gemini"

_GENERATE_CONTENT = "generateContent"
_STATUS_NAME = re.compile(r"[A-Z_]{1,40}")

GEMINI_MODEL_ID = re.compile(r"[a-z0-9][a-z0-9.-]*")
"""Gemini model names after ``models/``: ``gemini-2.5-flash``, ``gemma-3-27b-it``."""
_MODEL_PREFIX = "models/"


def _error_object(exc: errors.APIError) -> Mapping[str, object]:
    details = exc.details
    if isinstance(details, Mapping):
        inner = details.get("error", details)
        if isinstance(inner, Mapping):
            return inner
    return {}


def _detail_entries(exc: errors.APIError) -> Iterable[Mapping[str, object]]:
    entries = _error_object(exc).get("details")
    if isinstance(entries, list):
        yield from (entry for entry in entries if isinstance(entry, Mapping))


def _quota_ids(exc: errors.APIError) -> list[str]:
    ids: list[str] = []
    for entry in _detail_entries(exc):
        violations = entry.get("violations")
        if isinstance(violations, list):
            ids += [str(v.get("quotaId", "")) for v in violations if isinstance(v, Mapping)]
    return ids


def classify_gemini_error(exc: errors.APIError) -> tuple[ConfigStatus, StatusCause]:
    """Google's ``status`` and ``details[].reason`` first, the HTTP code after.

    Gemini reports a bad key as 400 (not 401) with reason API_KEY_INVALID, and an
    unsupported country as 400 FAILED_PRECONDITION "User location is not supported".
    """
    reasons = {str(entry.get("reason", "")) for entry in _detail_entries(exc)}
    status = (exc.status or "").upper()
    message = (exc.message or "").lower()
    if "API_KEY_INVALID" in reasons or status == "UNAUTHENTICATED":
        return ConfigStatus.INVALID, StatusCause.AUTH
    if status == "PERMISSION_DENIED":
        return ConfigStatus.INVALID, StatusCause.PERMISSION
    if status == "FAILED_PRECONDITION" and "location is not supported" in message:
        return ConfigStatus.ERROR, StatusCause.REGION
    if exc.code == 429 or status == "RESOURCE_EXHAUSTED":
        # Both daily quotas and per-minute limits say "You exceeded your current
        # quota"; the QuotaFailure's quotaId (…PerDay… / …PerMinute…) tells which.
        quota_ids = _quota_ids(exc)
        if any("PerMinute" in q or "PerSecond" in q for q in quota_ids):
            return ConfigStatus.ERROR, StatusCause.RATE_LIMIT
        if quota_ids or "quota" in message or "billing" in message:
            return ConfigStatus.ERROR, StatusCause.QUOTA
        return ConfigStatus.ERROR, StatusCause.RATE_LIMIT
    return classify_http_status(exc.code)


def _error_detail(exc: errors.APIError) -> str:
    # Google's status is an enum name (INVALID_ARGUMENT); anything else is not shown.
    status = (
        exc.status if isinstance(exc.status, str) and _STATUS_NAME.fullmatch(exc.status) else ""
    )
    return http_detail(exc.code, exc.message or "", qualifier=f" {status}" if status else "")


class GeminiAdapter(AdapterBase):
    """Lists the Gemini models a key can use for generateContent, in Google's order."""

    kind = ProviderKind.GEMINI
    provider = PROVIDER
    default_base_url = DEFAULT_BASE_URL
    # google-genai talks through httpx or httpx2 (GOOGLE_GENAI_HTTP_CLIENT picks) and
    # lets their transport errors out unwrapped (providers.md), so both are caught.
    timeout_errors = (httpx.TimeoutException, httpx2.TimeoutException)
    transport_errors = (httpx.TransportError, httpx2.TransportError)
    # UnknownApiResponseError (body not JSON) and pydantic's ValidationError (JSON of
    # the wrong shape) are both ValueErrors.
    unreadable_errors = (ValueError,)
    model_id_pattern = GEMINI_MODEL_ID

    async def fetch_models(self, api_key: str, options: Mapping[str, str]) -> list[str]:
        """Bare model names (``gemini-2.5-flash``); an API error as ProviderFailure."""
        try:
            return await self._list_names(api_key)
        except errors.APIError as exc:
            status, cause = classify_gemini_error(exc)
            raise self.failure(
                status, cause, api_key=api_key, detail=_error_detail(exc), http_status=exc.code
            ) from exc

    async def _list_names(self, api_key: str) -> list[str]:
        # The SDK's synchronous client in a worker thread, through the guarded
        # transport: one origin, capped pages, parsing off the event loop.
        return await self.off_loop(lambda: self._list_blocking(api_key))

    def _list_blocking(self, api_key: str) -> list[str]:
        # vertexai=False: GOOGLE_GENAI_USE_VERTEXAI in the environment must not turn
        # a Gemini key check into a Vertex AI call. No retry_options: one attempt.
        http_client = self.sync_http_client()
        client = genai.Client(
            vertexai=False,
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=self.base_url,
                api_version=API_VERSION,
                timeout=max(1, round(self.timeout_seconds * 1000)),  # milliseconds
                httpx_client=http_client,
                # Never used (the listing is synchronous), but given so the SDK builds
                # no TLS contexts of its own: ~50 ms each, per call.
                httpx_async_client=httpx.AsyncClient(verify=shared_tls_context()),
                async_client_args={"ssl": shared_tls_context()},
            ),
        )
        try:
            # The pager fetches later pages lazily through the client, so `client`
            # stays referenced (and open) until the iteration ends; it stops as soon
            # as the listing offers more than MAX_MODELS entries, however many pages.
            pager = client.models.list(config=types.ListModelsConfig(page_size=PAGE_SIZE))
            names: list[str] = []
            for seen, model in enumerate(pager, start=1):
                if seen > MAX_MODELS:
                    raise BadModelList(f"more than {MAX_MODELS} models offered; none were stored")
                name = model.name or ""
                if _GENERATE_CONTENT in (model.supported_actions or []) and name:
                    names.append(name.removeprefix(_MODEL_PREFIX))
            return names
        finally:
            client.close()
            http_client.close()


__all__ = ["API_VERSION", "DEFAULT_BASE_URL", "GeminiAdapter", "classify_gemini_error"]
