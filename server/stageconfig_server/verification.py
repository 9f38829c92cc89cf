"""Asking a provider what a key can use: one bounded call, classified into a verdict.

Updates verify a candidate key with it before anything is stored, and the model
refresh re-asks with the stored key. A provider's words reach the verdict only through
``redaction.redact``, so a reason never carries the key back to a caller.

A verdict is one of three things:

    rejected      status INVALID, no models: the provider refused the key
    unverifiable  status ERROR, no models: the provider could not be asked, or gave an
                  answer that neither accepts nor rejects the key (LiteLLM's 400 "No
                  connected db.")
    listed        models: ACTIVE when the listing proves the key; UNVERIFIED when the
                  provider has no key check at all (an adapter with ``checks_key =
                  False``: SpeechKit's static voice list proves nothing)
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from stageconfig_server.db.records import ConfigWrite
from stageconfig_server.domain import (
    ChangeReason,
    ConfigStatus,
    ProviderKind,
    StageType,
    StatusCause,
)
from stageconfig_server.providers.base import ProviderAdapter, ProviderCredentials, ProviderFailure
from stageconfig_server.redaction import redact, redact_variants

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

    @property
    def unverifiable(self) -> bool:
        """The provider neither accepted nor rejected the key (no models, not INVALID)."""
        return self.models is None and self.status is not ConfigStatus.INVALID


@dataclass(frozen=True, slots=True)
class Settled:
    """What a verdict leaves a stage with: the selected model, the cache and the status
    (the part of a change that updates and refreshes decide alike)."""

    model: str
    models: tuple[str, ...]
    cache_at: datetime | None
    status: ConfigStatus
    cause: StatusCause | None
    status_reason: str

    def write(
        self,
        stage: StageType,
        provider: ProviderKind,
        *,
        ciphertext: str,
        key_fingerprint: str,
        key_id: int | None,
        new_key: bool,
        options: Mapping[str, str],
        actor: str,
        reason: ChangeReason,
        comment: str = "",
    ) -> ConfigWrite:
        """The change that stores this outcome with the given key."""
        return ConfigWrite(
            stage_type=stage,
            provider_kind=provider,
            api_key_encrypted=ciphertext,
            api_key_fingerprint=key_fingerprint,
            model=self.model,
            models_cache=self.models,
            models_cache_updated_at=self.cache_at,
            status=self.status,
            status_cause=self.cause,
            status_reason=self.status_reason,
            options=dict(options),
            actor=actor,
            reason=reason,
            comment=comment,
            new_key=new_key,
            api_key_id=key_id,
        )


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
            # The adapters already built an excerpt; this catches an adapter that did not
            # (the key exact, then in its altered forms: redaction.key_variants).
            reason = redact_variants(redact(failure.message, api_key), api_key)
            return Verdict(None, failure.status, failure.cause, reason)
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
        unchecked = no_key_check_reason(adapter)
        if unchecked is not None:
            return Verdict(tuple(models), ConfigStatus.UNVERIFIED, None, unchecked)
        return Verdict(tuple(models), ConfigStatus.ACTIVE, None, "")


def no_key_check_reason(adapter: ProviderAdapter) -> str | None:
    """Why ``adapter``'s listing proves nothing about a key, or None when it does.

    An adapter of a provider without a free key check (SpeechKit) sets ``checks_key =
    False`` and words the reason in ``unverified_reason``; every other adapter's listing
    is a call the key must pass.
    """
    if getattr(adapter, "checks_key", True):
        return None
    reason = getattr(adapter, "unverified_reason", "")
    if isinstance(reason, str) and reason:
        return reason
    return f"{adapter.kind.value} has no call that checks a key; the key is not verified"
