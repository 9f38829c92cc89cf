"""The opening the six adapters share, written once: ``AdapterBase``.

Every adapter is built as ``Adapter(base_url=None, timeout_seconds=10)`` (no base URL:
the real endpoint; a trailing slash dropped), refuses an empty key before any request,
bounds the whole listing by the timeout, and turns every exception into a
``ProviderFailure`` worded by ``base.provider_failure``:

    ProviderFailure raised by the adapter    passed on as it is
    TimeoutError, ``timeout_errors``         ERROR (NETWORK) "no answer within …"
    ``transport_errors``                     ERROR (NETWORK) "connection to … failed"
    ``unreadable_errors``                    ERROR (UPSTREAM) "unreadable answer"
    ``guard.GuardRefusal`` (also as a cause)  ERROR (UPSTREAM) "redirected to another
                                             origin" / "answer larger than …" / "more
                                             than 1000 models offered" / "model #3 …"
    anything else                            ERROR (UPSTREAM) "unexpected …"
    an empty list                            ERROR (UPSTREAM) "no usable model"

Every HTTP request goes through a ``guard`` transport (one origin, a capped body), the
SDK-based adapters run their SDK's synchronous client in a worker thread (``off_loop``)
so parsing a large answer never blocks the event loop, and every list is checked by
``guard.checked_models`` against ``model_id_pattern`` before it is returned.

A concrete adapter says only what differs: its kind, name and real endpoint, which of
its SDK's exceptions mean what, and ``fetch_models``. The key-check adapters (Suno,
Pika) call ``get_for_key_check``, read the answer with ``json_or_none`` and report it
with ``failed_answer`` / ``unreadable_check``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import httpx

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers.base import (
    DEFAULT_TIMEOUT_SECONDS,
    ProviderCredentials,
    ProviderFailure,
    provider_failure,
    require_key,
)
from stageconfig_server.providers.guard import (
    DEFAULT_MODEL_ID,
    AsyncGuardedTransport,
    GuardedTransport,
    GuardRefusal,
    checked_models,
)
from stageconfig_server.redaction import excerpt

T = TypeVar("T")

_PROVIDER_THREADS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="stageconfig-provider")
"""The SDK listings' own threads: a provider that hangs until the timeout holds one of
these, never the loop's default executor (which asyncio's DNS lookups use)."""

KEY_CHECK_MAX_BYTES = 64 * 1024
"""A key check's answer is a few hundred bytes of JSON, read on the event loop: bounded
far below the listing cap."""

ExceptionTypes = tuple[type[BaseException], ...]


class AdapterBase:
    """Construction, the key check, the time bound and the failure ladder of an adapter.

    Subclasses set the class attributes and implement ``fetch_models``.
    """

    kind: ProviderKind
    """The provider kind this adapter serves (``ProviderAdapter.kind``)."""
    provider: str
    """The provider's name in every failure message ("OpenAI", "Pika (fal.ai)")."""
    default_base_url: str
    """The real endpoint, used when no base URL is given."""
    timeout_errors: ExceptionTypes = ()
    """The SDK's "no answer in time" exceptions (``TimeoutError`` is always one)."""
    transport_errors: ExceptionTypes = ()
    """The SDK's "could not connect / the connection broke" exceptions."""
    unreadable_errors: ExceptionTypes = ()
    """The SDK's "the answer could not be parsed" exceptions."""
    model_id_pattern: re.Pattern[str] = DEFAULT_MODEL_ID
    """What this provider's model ids look like; any other id refuses the whole list."""

    def __init__(
        self, base_url: str | None = None, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.timeout_seconds = timeout_seconds

    async def list_models(self, credentials: ProviderCredentials) -> list[str]:
        """The models this key can use, without duplicates, in the adapter's order.

        Raises ProviderFailure for every failure, never anything else; INVALID (AUTH)
        without a request when no key is set.
        """
        api_key = require_key(credentials, provider=self.provider)
        try:
            # The SDKs' timeouts bound each phase; this bounds the whole call, so a
            # server that trickles bytes cannot hold a key check open forever.
            async with asyncio.timeout(self.timeout_seconds):
                models = await self.fetch_models(api_key, credentials.options)
        except ProviderFailure:
            raise
        except Exception as exc:
            refusal = _guard_refusal(exc)
            if refusal is None:
                raise self._classified(api_key, exc) from exc
            raise self._upstream(api_key, refusal.detail) from exc
        try:
            unique = checked_models(models, pattern=self.model_id_pattern)
        except GuardRefusal as refusal:
            raise self._upstream(api_key, refusal.detail) from refusal
        if not unique:
            raise self._upstream(api_key, "provider offers no usable model")
        return unique

    def _classified(self, api_key: str, exc: Exception) -> ProviderFailure:
        """The failure an exception that is not a guard refusal stands for."""
        if isinstance(exc, (TimeoutError, *self.timeout_errors)):
            return self._timed_out(api_key)
        if isinstance(exc, self.transport_errors):
            return self._unreachable(api_key, self.base_url, self.transport_cause(exc))
        if isinstance(exc, self.unreadable_errors):
            return self._upstream(api_key, f"unreadable answer: {type(exc).__name__}")
        # The contract is "ProviderFailure, never anything else": an exception an SDK
        # did not wrap never reaches the service.
        return self._upstream(api_key, f"unexpected {type(exc).__name__}")

    async def fetch_models(self, api_key: str, options: Mapping[str, str]) -> list[str]:
        """Ask the provider (``api_key`` is set and stripped); raise ProviderFailure for
        what the provider said, and let transport exceptions out for the ladder."""
        raise NotImplementedError

    def sync_http_client(self) -> httpx.Client:
        """An httpx client for an SDK: only this adapter's origin, capped answers,
        same-origin redirects followed (another origin is refused by the guard)."""
        return httpx.Client(
            transport=GuardedTransport(self.base_url, timeout_seconds=self.timeout_seconds),
            timeout=httpx.Timeout(self.timeout_seconds),
            follow_redirects=True,
            trust_env=False,  # the guard applies the environment's proxy itself
        )

    async def off_loop(self, call: Callable[[], T]) -> T:
        """Run a blocking SDK call (request, parse, model objects) in a worker thread, so
        a large answer costs that thread, not the event loop. The guard's deadline ends
        a dripping answer even after the awaiting side gave up."""
        return await asyncio.get_running_loop().run_in_executor(_PROVIDER_THREADS, call)

    def transport_cause(self, exc: BaseException) -> BaseException:
        """The exception whose type names what failed in a transport error."""
        return exc

    def failure(
        self,
        status: ConfigStatus,
        cause: StatusCause,
        *,
        api_key: str,
        detail: str = "",
        http_status: int | None = None,
    ) -> ProviderFailure:
        """A ProviderFailure in this provider's name (``base.provider_failure``)."""
        return provider_failure(
            status,
            cause,
            provider=self.provider,
            api_key=api_key,
            detail=detail,
            http_status=http_status,
        )

    async def get_for_key_check(
        self,
        path: str,
        *,
        api_key: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One GET of ``{base_url}{path}``, no retries; transport failures become ERROR
        (NETWORK) naming the origin. HTTP error statuses are returned, not raised:
        each provider reads its own body."""
        url = self.base_url + path
        try:
            transport = AsyncGuardedTransport(
                self.base_url, timeout_seconds=self.timeout_seconds, max_bytes=KEY_CHECK_MAX_BYTES
            )
            async with httpx.AsyncClient(
                transport=transport,
                timeout=httpx.Timeout(self.timeout_seconds),
                follow_redirects=True,
                trust_env=False,  # the guard applies the environment's proxy itself
            ) as client:
                return await client.get(url, headers=dict(headers), params=params)
        except GuardRefusal:
            raise
        except httpx.TimeoutException as exc:
            raise self._timed_out(api_key) from exc
        except httpx.HTTPError as exc:
            raise self._unreachable(api_key, _origin(url), exc) from exc

    def failed_answer(
        self,
        response: httpx.Response,
        verdict: tuple[ConfigStatus, StatusCause],
        *,
        api_key: str,
        said: str = "",
        qualifier: str = "",
    ) -> ProviderFailure:
        """A key check's answer the provider marked as failed, classified as ``verdict``
        (``http_detail`` wording)."""
        status, cause = verdict
        return self.failure(
            status,
            cause,
            api_key=api_key,
            detail=http_detail(response.status_code, said, qualifier=qualifier),
            http_status=response.status_code,
        )

    def unreadable_check(
        self, response: httpx.Response, *, api_key: str, check: str
    ) -> ProviderFailure:
        """A successful key check whose answer is not what ``check`` documents (ERROR,
        UPSTREAM)."""
        return self.failure(
            ConfigStatus.ERROR,
            StatusCause.UPSTREAM,
            api_key=api_key,
            detail=f"unreadable answer to the {check}",
            http_status=response.status_code,
        )

    def _timed_out(self, api_key: str) -> ProviderFailure:
        return self.failure(
            ConfigStatus.ERROR,
            StatusCause.NETWORK,
            api_key=api_key,
            detail=f"no answer within {self.timeout_seconds:g} s",
        )

    def _unreachable(self, api_key: str, where: str, exc: BaseException) -> ProviderFailure:
        return self.failure(
            ConfigStatus.ERROR,
            StatusCause.NETWORK,
            api_key=api_key,
            detail=f"connection to {where} failed: {type(exc).__name__}",
        )

    def _upstream(self, api_key: str, detail: str) -> ProviderFailure:
        return self.failure(
            ConfigStatus.ERROR, StatusCause.UPSTREAM, api_key=api_key, detail=detail
        )


def http_detail(http_status: int, said: str = "", *, qualifier: str = "") -> str:
    """``HTTP 401: <what the provider said>`` — what the admin sees in parentheses.

    What the provider said is kept only as ``redaction.excerpt`` (bounded, invisible
    characters removed, long token-like runs masked): it may carry the key.

    ``qualifier`` follows the code (``HTTP 400 FAILED_PRECONDITION``, ``HTTP 200, code
    455``).
    """
    shown = f"HTTP {http_status}{qualifier}"
    said = excerpt(said)
    return f"{shown}: {said}" if said else shown


def json_or_none(response: httpx.Response) -> object:
    """The answer's JSON, or None when it is not JSON at all."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _guard_refusal(exc: BaseException) -> GuardRefusal | None:
    """The guard's refusal behind ``exc`` (SDKs wrap transport exceptions), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, GuardRefusal):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode()}"


__all__ = ["AdapterBase", "ExceptionTypes", "http_detail", "json_or_none"]
