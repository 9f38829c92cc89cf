"""Whose fault a provider call's failure is: the route's (move on to the next route) or
the caller's (raise it at once).

``classify(exc)`` reads the exceptions of the openai SDK, the google-genai SDK and httpx
(and the builtin TimeoutError / ConnectionError) by duck typing — none of them is
imported here — and answers a ``RouteFailure`` when the route is to blame, None when
the caller is (or the exception is no provider's at all: a bug is never failed over)::

    401, API key rejected (Gemini's 400 API_KEY_INVALID too)   AUTH
    402, 429 or 403 naming quota / credits / balance / billing  QUOTA
    429 otherwise                                               RATE_LIMIT
    403 otherwise                                               PERMISSION (REGION when a
                                                                region is refused)
    408, 409, 5xx                                               UPSTREAM
    timeout, connection failure                                 NETWORK
    400, 404, 413, 422 (the caller's request)                   raised at once

A ``RouteFailure`` holds only what is safe to show: the cause, the HTTP status or
``timeout`` / ``connection``, and a bounded ``Retry-After``. Never the provider's body
(it may echo the key) and never the key.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stageconfig._types import StatusCause

MAX_RETRY_AFTER_SECONDS = 3600.0
"""The longest ``Retry-After`` honoured: a provider asking for more gets an hour."""

_CALLER_STATUSES = frozenset({400, 404, 413, 422})
_QUOTA_WORDS = ("quota", "credit", "balance", "billing", "insufficient", "perday")
_REGION_WORDS = ("region", "location is not supported", "country")
_AUTH_WORDS = ("api_key_invalid", "api key not valid", "invalid api key", "invalid_api_key")
_TIMEOUT_NAMES = frozenset({"APITimeoutError", "TimeoutException"})
"""openai's and httpx's timeouts (the builtin TimeoutError is checked by type)."""
_BODY_CHARS = 4096
"""How much of a body the hints are looked for in (never shown anywhere)."""


@dataclass(frozen=True, slots=True)
class RouteFailure:
    """Why one route failed a call, in words safe for logs, reports and exceptions."""

    cause: StatusCause
    detail: str
    """The HTTP status (``"429"``), ``"timeout"``, ``"connection"`` or ``"breaker open"``."""
    retry_after: float | None = None
    """Seconds the provider asked to wait (``Retry-After``), at most an hour."""

    def __str__(self) -> str:
        return f"{self.cause.value} ({self.detail})"


def classify(exc: BaseException) -> RouteFailure | None:
    """The route's failure behind ``exc``, or None when it is the caller's to handle."""
    status = _status_code(exc)
    if status is not None:
        return _from_status(status, _hints(exc), _retry_after(exc))
    if _is_timeout(exc):
        return RouteFailure(StatusCause.NETWORK, "timeout")
    if _is_connection_failure(exc):
        return RouteFailure(StatusCause.NETWORK, "connection")
    return None


def _from_status(status: int, hints: str, retry_after: float | None) -> RouteFailure | None:
    detail = str(status)
    if status == 401 or (status == 400 and any(w in hints for w in _AUTH_WORDS)):
        return RouteFailure(StatusCause.AUTH, detail)
    if status == 400 and any(w in hints for w in _REGION_WORDS):
        return RouteFailure(StatusCause.REGION, detail)
    if status in _CALLER_STATUSES:
        return None
    if status == 402:
        return RouteFailure(StatusCause.QUOTA, detail, retry_after)
    if status == 429:
        # Gemini says "quota" in both of its 429s; the quota id tells a daily quota
        # from a per-minute limit.
        if "perminute" not in hints and any(w in hints for w in _QUOTA_WORDS):
            return RouteFailure(StatusCause.QUOTA, detail, retry_after)
        return RouteFailure(StatusCause.RATE_LIMIT, detail, retry_after)
    if status == 403:
        if any(w in hints for w in _QUOTA_WORDS) or "exhausted" in hints:
            return RouteFailure(StatusCause.QUOTA, detail)
        if any(w in hints for w in _REGION_WORDS):
            return RouteFailure(StatusCause.REGION, detail)
        return RouteFailure(StatusCause.PERMISSION, detail)
    if status in (408, 409) or status >= 500:
        return RouteFailure(StatusCause.UPSTREAM, detail, retry_after)
    if status >= 400:
        return RouteFailure(StatusCause.UPSTREAM, detail)
    return None


def _status_code(exc: BaseException) -> int | None:
    # openai.APIStatusError: status_code; google.genai.errors.APIError: code;
    # httpx.HTTPStatusError: response.status_code.
    for value in (
        getattr(exc, "status_code", None),
        getattr(exc, "code", None) if _is_genai_error(exc) else None,
        getattr(getattr(exc, "response", None), "status_code", None)
        if type(exc).__name__ == "HTTPStatusError"
        else None,
    ):
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


def _is_genai_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("google.genai")


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError):
        return True
    return any(cls.__name__ in _TIMEOUT_NAMES for cls in type(exc).__mro__)


def _is_connection_failure(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    # openai.APIConnectionError; httpx.TransportError (ConnectError, RemoteProtocolError…).
    return bool(names & {"APIConnectionError", "TransportError"})


def _hints(exc: BaseException) -> str:
    """Lower-cased text of the error body, looked into and never shown."""
    parts: list[str] = []
    for name in ("body", "details", "message", "code", "type", "status"):
        value = getattr(exc, name, None)
        if value is not None and not callable(value):
            parts.append(str(value))
    response = getattr(exc, "response", None)
    text = _response_text(response)
    if text:
        parts.append(text)
    return " ".join(parts)[: 4 * _BODY_CHARS].lower()


def _response_text(response: Any) -> str:
    try:
        text = response.text if response is not None else ""
    except Exception:  # a streamed body not read yet: no hints from it
        return ""
    return text[:_BODY_CHARS] if isinstance(text, str) else ""


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("retry-after") if isinstance(headers, Mapping) else None
        if value is None:
            value = headers.get("Retry-After")
    except Exception:  # an unusual headers object: no hint
        return None
    return parse_retry_after(value)


def parse_retry_after(value: object, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value (seconds or an HTTP date), between 0 and
    ``MAX_RETRY_AFTER_SECONDS``; None when it is absent or unreadable."""
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER_SECONDS, max(0.0, seconds))
