"""What a provider may send back: one origin, a bounded answer, bounded model ids.

A provider's answer is input like an admin's, so every adapter's HTTP goes through a
``GuardedTransport`` (the SDKs get it inside an ``httpx`` client) and every list it
returns through ``checked_models``:

    GuardRefusal
      CrossOrigin     a request (a redirect) for another scheme, host or port: refused
                      before a byte is sent there, so no header (the key) leaves
      AnswerTooLarge  a body over ``MAX_ANSWER_BYTES``, or one still dripping at the
                      deadline: reading stops there
      BadModelList    more than ``MAX_MODELS`` models, or an id too long or outside
                      the provider's character set

Bodies are asked for uncompressed (``Accept-Encoding: identity``), so the cap bounds
what is parsed, not a compressed bomb's wrapper.
"""

from __future__ import annotations

import functools
import re
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Iterable, Iterator

import httpx

MAX_MODELS = 1000
"""The most models a listing may offer; a longer list is refused, not truncated (a
provider that offers 100,000 models is not one to trust with the rest either)."""

MAX_MODEL_ID_CHARS = 256
"""The admin limit on a model id (``validation.MAX_MODEL_LENGTH``) applies to providers."""

MAX_ANSWER_BYTES = 1024 * 1024
"""The most bytes read from one provider answer: real listings are under 100 KB
(OpenAI ≈ 10 KB, a Gemini page ≈ 60 KB)."""

DEFAULT_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")
"""What model ids look like across providers: ``gpt-4o``, ``ft:gpt-4o:org::id``,
``yandexgpt/latest``, ``gpt://folder/yandexgpt/latest``, ``V4_5PLUS``."""


class GuardRefusal(Exception):
    """A provider's answer this server will not use; ``detail`` says why (no key)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class CrossOrigin(GuardRefusal):
    """A request for another origin than the provider's (a redirect)."""


class AnswerTooLarge(GuardRefusal):
    """An answer over the byte cap, or not finished by the deadline."""


class BadModelList(GuardRefusal):
    """A model list too long, or with an id this server will not store."""


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """The one TLS context of every provider call (loading the CA bundle takes ~50 ms)."""
    return ssl.create_default_context()


def origin(url: httpx.URL) -> str:
    """``scheme://host:port`` with the default port spelt out."""
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{url.scheme}://{url.host}:{port}"


def _safe_origin(url: httpx.URL) -> str:
    # The origin comes from the provider's Location header: bounded, printable only.
    shown = "".join(ch for ch in origin(url) if ch.isprintable())
    return shown[:100]


def env_proxy(base_url: str) -> str | None:
    """The proxy the standard environment (``HTTPS_PROXY``, ``NO_PROXY``…) names for
    ``base_url``'s origin, or None. The guarded clients do not let httpx read the
    environment itself: its proxy transports would bypass the guard."""
    url = httpx.URL(base_url)
    if url.host and urllib.request.proxy_bypass(url.host):
        return None
    return urllib.request.getproxies().get(url.scheme) or None


class _Cap:
    """Counts the bytes and time of one answer."""

    def __init__(self, max_bytes: int, deadline: float) -> None:
        self._left = max_bytes
        self._max = max_bytes
        self._deadline = deadline

    def take(self, chunk: bytes) -> bytes:
        self._left -= len(chunk)
        if self._left < 0:
            raise AnswerTooLarge(f"answer larger than {self._max // 1024} KB")
        if time.monotonic() > self._deadline:
            raise AnswerTooLarge("answer still arriving at the deadline")
        return chunk


class _CappedSyncStream(httpx.SyncByteStream):
    def __init__(self, inner: Iterable[bytes], cap: _Cap, close: httpx.Response) -> None:
        self._inner, self._cap, self._response = inner, cap, close

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            yield self._cap.take(chunk)

    def close(self) -> None:
        self._response.close()


class _CappedAsyncStream(httpx.AsyncByteStream):
    def __init__(self, response: httpx.Response, cap: _Cap) -> None:
        self._response, self._cap = response, cap

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.aiter_raw():
            yield self._cap.take(chunk)

    async def aclose(self) -> None:
        await self._response.aclose()


class _Guard:
    """The checks both transports share."""

    def __init__(self, base_url: str, max_bytes: int, timeout_seconds: float) -> None:
        self.origin = origin(httpx.URL(base_url))
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds

    def check(self, request: httpx.Request) -> None:
        where = origin(request.url)
        if where != self.origin:
            raise CrossOrigin(f"redirected to another origin ({_safe_origin(request.url)})")
        # Ask for the body as it is, so the byte cap bounds what is parsed.
        request.headers["Accept-Encoding"] = "identity"

    def cap(self) -> _Cap:
        return _Cap(self.max_bytes, time.monotonic() + self.timeout_seconds)

    def early_refusal(self, response: httpx.Response) -> None:
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise AnswerTooLarge(f"answer larger than {self.max_bytes // 1024} KB")


class GuardedTransport(httpx.BaseTransport):
    """A sync transport that sends only to ``base_url``'s origin and caps answers."""

    def __init__(
        self, base_url: str, *, timeout_seconds: float, max_bytes: int = MAX_ANSWER_BYTES
    ) -> None:
        self._guard = _Guard(base_url, max_bytes, timeout_seconds)
        self._inner = httpx.HTTPTransport(verify=shared_tls_context(), proxy=env_proxy(base_url))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Refuse another origin; pass the rest on with a capped body."""
        self._guard.check(request)
        response = self._inner.handle_request(request)
        try:
            self._guard.early_refusal(response)
        except GuardRefusal:
            response.close()
            raise
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_CappedSyncStream(response.stream, self._guard.cap(), response),
            extensions=response.extensions,
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self._inner.close()


class AsyncGuardedTransport(httpx.AsyncBaseTransport):
    """The async twin of ``GuardedTransport``."""

    def __init__(
        self, base_url: str, *, timeout_seconds: float, max_bytes: int = MAX_ANSWER_BYTES
    ) -> None:
        self._guard = _Guard(base_url, max_bytes, timeout_seconds)
        self._inner = httpx.AsyncHTTPTransport(
            verify=shared_tls_context(), proxy=env_proxy(base_url)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Refuse another origin; pass the rest on with a capped body."""
        self._guard.check(request)
        response = await self._inner.handle_async_request(request)
        try:
            self._guard.early_refusal(response)
        except GuardRefusal:
            await response.aclose()
            raise
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_CappedAsyncStream(response, self._guard.cap()),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._inner.aclose()


def checked_models(
    models: Iterable[object], *, pattern: re.Pattern[str] = DEFAULT_MODEL_ID
) -> list[str]:
    """The listing's ids without duplicates, in order; BadModelList when there are more
    than ``MAX_MODELS`` or one is not a string of at most ``MAX_MODEL_ID_CHARS``
    matching ``pattern`` (nothing of the offending id is repeated)."""
    unique: dict[str, None] = {}
    for position, model in enumerate(models, start=1):
        if not isinstance(model, str) or not model:
            raise BadModelList(f"model #{position} has no id")
        if len(model) > MAX_MODEL_ID_CHARS:
            raise BadModelList(
                f"model #{position} has an id of {len(model)} characters "
                f"(at most {MAX_MODEL_ID_CHARS})"
            )
        if not pattern.fullmatch(model):
            raise BadModelList(f"model #{position} has an id with characters a model id cannot use")
        unique[model] = None
        if len(unique) > MAX_MODELS:
            raise BadModelList(f"more than {MAX_MODELS} models offered; none were stored")
    return list(unique)


__all__ = [
    "DEFAULT_MODEL_ID",
    "MAX_ANSWER_BYTES",
    "MAX_MODELS",
    "MAX_MODEL_ID_CHARS",
    "AnswerTooLarge",
    "AsyncGuardedTransport",
    "BadModelList",
    "CrossOrigin",
    "GuardRefusal",
    "GuardedTransport",
    "checked_models",
    "env_proxy",
    "origin",
    "shared_tls_context",
]
