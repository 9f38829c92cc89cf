"""Yandex SpeechKit (TTS v3): the static voice list; no network at all.

SpeechKit has no listing endpoint and no free key check (providers.md): the only call
that uses a key is synthesis, which is billed. So the daily sync serves this list
without touching the network, a bad key shows up only when a worker synthesises, and
the adapter says so (``checks_key = False``): a SpeechKit config is stored and shown
as UNVERIFIED with ``UNVERIFIED_REASON``, never as ACTIVE. Model id = ``voice`` or
``voice:role``.

Base URL convention: the TTS host root (default ``https://tts.api.cloud.yandex.net``),
kept for the workers' synthesis calls; this adapter never uses it.
"""

from __future__ import annotations

from collections.abc import Mapping

from stageconfig_server.domain import ProviderKind
from stageconfig_server.providers.adapter import AdapterBase

DEFAULT_BASE_URL = "https://tts.api.cloud.yandex.net"
"""Where synthesis goes (``POST {base}/tts/v3/utteranceSynthesis``)."""

PROVIDER = "SpeechKit"

UNVERIFIED_REASON = (
    "Yandex SpeechKit has no call that checks a key without synthesising speech, so the "
    "key is not verified; a wrong key shows up when a worker synthesises"
)
"""The status reason of every SpeechKit config (status UNVERIFIED)."""

VOICE_ROLES: Mapping[str, tuple[str, ...]] = {
    # ru-RU
    "alena": ("neutral", "good"),
    "filipp": (),
    "ermil": ("neutral", "good"),
    "jane": ("neutral", "good", "evil"),
    "omazh": ("neutral", "evil"),
    "zahar": ("neutral", "good"),
    "dasha": ("neutral", "good", "friendly"),
    "julia": ("neutral", "strict"),
    "lera": ("neutral", "friendly"),
    "masha": ("good", "strict", "friendly"),
    "marina": ("neutral", "whisper", "friendly"),
    "alexander": ("neutral", "good"),
    "kirill": ("neutral", "strict", "good"),
    "anton": ("neutral", "good"),
    # en-US, de-DE, kk, uz
    "john": (),
    "lea": (),
    "amira": (),
    "madi": (),
    "saule": (),
    "zhanar": (),
    "nigora": (),
}
"""Voices (providers.md) and the roles each one speaks, per Yandex's voice table.

providers.md lists the union of roles (neutral, good, evil, friendly, strict,
whisper); pairing every voice with every role would offer ids that fail at synthesis.
"""

MODELS: tuple[str, ...] = tuple(
    model_id
    for voice, roles in VOICE_ROLES.items()
    for model_id in (voice, *(f"{voice}:{role}" for role in roles))
)
"""Every model id: each voice, then its ``voice:role`` variants, in VOICE_ROLES order."""


class SpeechKitAdapter(AdapterBase):
    """Returns the static SpeechKit voice list; never contacts Yandex.

    The base URL is accepted for a uniform constructor (``registry.build_adapters``)
    and kept for the workers' synthesis calls; this adapter never uses it.
    """

    kind = ProviderKind.SPEECHKIT
    provider = PROVIDER
    default_base_url = DEFAULT_BASE_URL
    checks_key = False
    """Listing the voices proves nothing about the key (``verification`` reads this)."""
    unverified_reason = UNVERIFIED_REASON
    """Why a SpeechKit key stays UNVERIFIED."""

    async def fetch_models(self, api_key: str, options: Mapping[str, str]) -> list[str]:
        """The static voice list (the base already refused an empty key)."""
        return list(MODELS)


__all__ = ["DEFAULT_BASE_URL", "MODELS", "UNVERIFIED_REASON", "VOICE_ROLES", "SpeechKitAdapter"]
