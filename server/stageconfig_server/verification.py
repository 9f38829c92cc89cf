"""Asking a provider what a key can use: one bounded call, classified into a verdict.

Updates verify a candidate key with it before anything is stored, and the model
refresh re-asks with the stored key. A provider's words reach the verdict only through
``redaction.redact``, so a reason never carries the key back to a caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers.base import ProviderAdapter, ProviderCredentials, ProviderFailure
from stageconfig_server.redaction import redact

_OUTER_BOUND_MARGIN_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """The provider's verdict on a key."""

    models: tuple[str, ...] | None
    """The models the key can use; None when the provider could not be asked."""
    status: ConfigStatus
    cause: StatusCause | None
    reason: str
    """Why the status is not ACTIVE, in words an admin can act on ("" when it is)."""


class ProviderCheck:
    """Lists a key's models through the provider adapters, within a time bound."""

    def __init__(
        self, adapters: Mapping[ProviderKind, ProviderAdapter], timeout_seconds: float
    ) -> None:
        self._adapters = adapters
        self._timeout = timeout_seconds

    async def verdict(
        self, provider: ProviderKind, api_key: str, options: Mapping[str, str]
    ) -> Verdict:
        """Ask ``provider`` for the models ``api_key`` can use; never raises for what the
        provider (or the network) does."""
        adapter = self._adapters[provider]
        try:
            # The adapter bounds its own calls; this outer bound also covers DNS and
            # anything an SDK does before its timeout applies.
            models = await asyncio.wait_for(
                adapter.list_models(ProviderCredentials(api_key, dict(options))),
                timeout=self._timeout + _OUTER_BOUND_MARGIN_SECONDS,
            )
        except ProviderFailure as failure:
            return Verdict(None, failure.status, failure.cause, redact(failure.message, api_key))
        except TimeoutError:
            return Verdict(
                None,
                ConfigStatus.ERROR,
                StatusCause.NETWORK,
                f"{provider.value} did not answer within {self._timeout:g} s",
            )
        if not models:
            return Verdict(
                None, ConfigStatus.ERROR, StatusCause.UPSTREAM, f"{provider.value} offers no models"
            )
        return Verdict(tuple(models), ConfigStatus.ACTIVE, None, "")
