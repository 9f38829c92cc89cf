"""The opening the six adapters share, written once: ``AdapterBase``.

Every adapter is built as ``Adapter(base_url=None, timeout_seconds=10)`` (no base URL:
the real endpoint; a trailing slash dropped), refuses an empty key before any request,
bounds the whole listing by the timeout, and turns every exception into a
``ProviderFailure`` worded by ``base.provider_failure``:

    ProviderFailure raised by the adapter    passed on as it is
    TimeoutError, ``timeout_errors``         ERROR (NETWORK) "no answer within …"
    ``transport_errors``                     ERROR (NETWORK) "connection to … failed"
    ``unreadable_errors``                    ERROR (UPSTREAM) "unreadable answer"
    anything else                            ERROR (UPSTREAM) "unexpected …"
    an empty list                            ERROR (UPSTREAM) "no usable model"

A concrete adapter says only what differs: its kind, name and real endpoint, which of
its SDK's exceptions mean what, and ``fetch_models``. The key-check adapters (Suno,
Pika) call ``get_for_key_check``, read the answer with ``json_or_none`` and report it
with ``failed_answer`` / ``unreadable_check``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

import httpx

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers.base import (
    DEFAULT_TIMEOUT_SECONDS,
    ProviderCredentials,
    ProviderFailure,
    provider_failure,
    require_key,
)

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
        timeouts: ExceptionTypes = (TimeoutError, *self.timeout_errors)
        try:
            # The SDKs' timeouts bound each phase; this bounds the whole call, so a
            # server that trickles bytes cannot hold a key check open forever.
            async with asyncio.timeout(self.timeout_seconds):
                models = await self.fetch_models(api_key, credentials.options)
        except ProviderFailure:
            raise
        except timeouts as exc:
            raise self._timed_out(api_key) from exc
        except self.transport_errors as exc:
            raise self._unreachable(api_key, self.base_url, self.transport_cause(exc)) from exc
        except self.unreadable_errors as exc:
            raise self._upstream(api_key, f"unreadable answer: {type(exc).__name__}") from exc
        except Exception as exc:
            # The contract is "ProviderFailure, never anything else": an exception an SDK
            # did not wrap never reaches the service.
            raise self._upstream(api_key, f"unexpected {type(exc).__name__}") from exc
        unique = list(dict.fromkeys(models))
        if not unique:
            raise self._upstream(api_key, "provider offers no usable model")
        return unique

    async def fetch_models(self, api_key: str, options: Mapping[str, str]) -> list[str]:
        """Ask the provider (``api_key`` is set and stripped); raise ProviderFailure for
        what the provider said, and let transport exceptions out for the ladder."""
        raise NotImplementedError

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
            async with httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_seconds)) as client:
                return await client.get(url, headers=dict(headers), params=params)
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

    ``qualifier`` follows the code (``HTTP 400 FAILED_PRECONDITION``, ``HTTP 200, code
    455``).
    """
    shown = f"HTTP {http_status}{qualifier}"
    return f"{shown}: {said}" if said else shown


def json_or_none(response: httpx.Response) -> object:
    """The answer's JSON, or None when it is not JSON at all."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode()}"


__all__ = ["AdapterBase", "ExceptionTypes", "http_detail", "json_or_none"]
