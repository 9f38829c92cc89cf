"""What every provider adapter offers: list the models a key can use, or say why not.

Failures are classified by what the provider said (providers.md), not by HTTP code
alone, into two outcomes:

    ProviderFailure
      status=INVALID  the provider rejected the key (AUTH, PERMISSION)
      status=ERROR    anything else (QUOTA, RATE_LIMIT, REGION, UPSTREAM, NETWORK)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.redaction import MAX_EXCERPT_CHARS, redact, redact_variants, visible

DEFAULT_TIMEOUT_SECONDS = 10.0
"""Bound on one listing call; a provider slower than this is an ERROR (NETWORK)."""


class ProviderFailure(Exception):
    """A provider did not give a model list.

    ``status`` is INVALID when the key was rejected, ERROR otherwise; ``cause`` is the
    one-word reason and ``message`` an admin-readable sentence that never contains
    the key.
    """

    def __init__(
        self,
        status: ConfigStatus,
        cause: StatusCause,
        message: str,
        *,
        http_status: int | None = None,
    ) -> None:
        if status not in (ConfigStatus.INVALID, ConfigStatus.ERROR):
            raise ValueError(f"a provider failure is INVALID or ERROR, not {status}")
        super().__init__(message)
        self.status = status
        self.cause = cause
        self.message = message
        self.http_status = http_status
        """The provider's HTTP status when it answered at all (for logs and metrics)."""

    def __repr__(self) -> str:
        return f"ProviderFailure({self.status}, {self.cause}, {self.message!r})"


@dataclass(frozen=True, slots=True)
class ProviderCredentials:
    """What an adapter needs to talk to its provider for one stage."""

    api_key: str
    options: Mapping[str, str]

    def __repr__(self) -> str:  # never show the key
        return f"ProviderCredentials(api_key=<hidden>, options={dict(self.options)!r})"


class ProviderAdapter(Protocol):
    """One provider kind's listing and key check."""

    kind: ProviderKind

    async def list_models(self, credentials: ProviderCredentials) -> list[str]:
        """Return the models this key can use, in the provider's order (non-empty).

        Raises ProviderFailure for every failure, never anything else.
        """
        ...


# --- Shared by the adapters: one wording, one redaction, one fallback table. ---

_CAUSE_SENTENCES: Mapping[StatusCause, str] = {
    StatusCause.AUTH: "{provider} rejected the API key",
    StatusCause.PERMISSION: "{provider} says this key lacks permission",
    StatusCause.QUOTA: "{provider} says the account is out of quota or credits",
    StatusCause.RATE_LIMIT: "{provider} is rate-limiting this key",
    StatusCause.REGION: "{provider} does not serve the region this server runs in",
    StatusCause.UPSTREAM: "{provider} did not return a usable model list",
    StatusCause.NETWORK: "{provider} could not be reached",
}

_MAX_DETAIL_CHARS = MAX_EXCERPT_CHARS
"""Provider messages can be long (HTML error pages); an admin needs the gist only."""


def provider_failure(
    status: ConfigStatus,
    cause: StatusCause,
    *,
    provider: str,
    api_key: str,
    detail: str = "",
    http_status: int | None = None,
) -> ProviderFailure:
    """Build a ProviderFailure whose message is one sentence an admin can act on.

    ``detail`` (what the provider said, an HTTP code, an exception name) is appended
    in parentheses; invisible characters are removed and the key in any altered form
    (``redaction.key_variants``) is redacted *before* truncation, so that a cut can
    never leave a prefix of the key behind.
    """
    message = _CAUSE_SENTENCES[cause].format(provider=provider)
    detail = redact_variants(visible(redact(detail, api_key)), api_key)
    if len(detail) > _MAX_DETAIL_CHARS:
        detail = detail[: _MAX_DETAIL_CHARS - 1] + "…"
    if detail:
        message = f"{message} ({detail})"
    return ProviderFailure(status, cause, redact(message + ".", api_key), http_status=http_status)


def classify_http_status(status_code: int) -> tuple[ConfigStatus, StatusCause]:
    """The fallback table for a status code a provider did not explain further.

    Adapters look at the body first (providers.md: classify by what the provider
    says) and use this only for what is left.
    """
    if status_code == 401:
        return ConfigStatus.INVALID, StatusCause.AUTH
    if status_code == 403:
        return ConfigStatus.INVALID, StatusCause.PERMISSION
    if status_code == 429:
        return ConfigStatus.ERROR, StatusCause.RATE_LIMIT
    if status_code == 408:
        return ConfigStatus.ERROR, StatusCause.NETWORK
    return ConfigStatus.ERROR, StatusCause.UPSTREAM


def require_key(credentials: ProviderCredentials, *, provider: str) -> str:
    """The key to send, or INVALID (AUTH) without a network call when there is none.

    An empty key would only earn a 401, and some SDKs would silently fall back to a
    key from the environment (OPENAI_API_KEY, GEMINI_API_KEY) instead.
    """
    key = credentials.api_key.strip()
    if not key:
        raise provider_failure(
            ConfigStatus.INVALID,
            StatusCause.AUTH,
            provider=provider,
            api_key=credentials.api_key,
            detail="no API key is set",
        )
    return key
