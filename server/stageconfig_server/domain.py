"""The domain: stages, providers, statuses and the allowed matrix.

This module is the single source of truth for which provider a stage may use.
It knows nothing of gRPC, SQL or HTTP.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


class StageType(enum.StrEnum):
    """A step of the content pipeline."""

    POEM = "POEM"
    VOICE = "VOICE"
    SONG = "SONG"
    CLIP = "CLIP"


class ProviderKind(enum.StrEnum):
    """An AI provider a stage can use."""

    YANDEX_GPT = "YANDEX_GPT"
    GEMINI = "GEMINI"
    OPENAI = "OPENAI"
    SPEECHKIT = "SPEECHKIT"
    SUNO = "SUNO"
    PIKA = "PIKA"


class ConfigStatus(enum.StrEnum):
    """Health of a stage's config as last seen by its provider."""

    ACTIVE = "ACTIVE"
    WARNING = "WARNING"  # selected model vanished and was replaced
    INVALID = "INVALID"  # provider rejected the key
    ERROR = "ERROR"  # provider unreachable / 5xx / timeout / quota / region
    UNVERIFIED = "UNVERIFIED"  # stored without the provider confirming the key


class StatusCause(enum.StrEnum):
    """One word saying why a status is not ACTIVE (providers.md's reasons)."""

    AUTH = "AUTH"
    PERMISSION = "PERMISSION"
    QUOTA = "QUOTA"
    RATE_LIMIT = "RATE_LIMIT"
    REGION = "REGION"
    UPSTREAM = "UPSTREAM"
    NETWORK = "NETWORK"
    MODEL_REPLACED = "MODEL_REPLACED"


class ConfigSource(enum.StrEnum):
    """Where a config came from."""

    DATABASE = "DATABASE"
    FALLBACK = "FALLBACK"
    UNCONFIGURED = "UNCONFIGURED"


class ChangeReason(enum.StrEnum):
    """Why a revision was written."""

    ADMIN_UPDATE = "ADMIN_UPDATE"
    SYNC = "SYNC"
    MODEL_REPLACED = "MODEL_REPLACED"
    ROLLBACK = "ROLLBACK"
    IMPORT = "IMPORT"


ALLOWED_PROVIDERS: Mapping[StageType, tuple[ProviderKind, ...]] = {
    StageType.POEM: (ProviderKind.YANDEX_GPT, ProviderKind.GEMINI, ProviderKind.OPENAI),
    StageType.VOICE: (ProviderKind.SPEECHKIT,),
    StageType.SONG: (ProviderKind.SUNO,),
    StageType.CLIP: (ProviderKind.PIKA,),
}
"""The allowed matrix: the only providers each stage may choose."""

REQUIRED_OPTIONS: Mapping[ProviderKind, tuple[str, ...]] = {
    ProviderKind.YANDEX_GPT: ("folder_id",),
}
"""Options a provider cannot work without."""

KNOWN_OPTIONS: Mapping[ProviderKind, tuple[str, ...]] = {
    ProviderKind.YANDEX_GPT: ("folder_id",),
}
"""Every option a provider understands; anything else is rejected as a typo."""


def is_allowed(stage: StageType, provider: ProviderKind) -> bool:
    """Whether ``provider`` may serve ``stage``."""
    return provider in ALLOWED_PROVIDERS[stage]


@dataclass(frozen=True, slots=True)
class StageConfig:
    """One stage's configuration with the key in plaintext.

    Lives only in memory inside the server; ``repr`` masks the key so it never
    reaches a log by accident.
    """

    stage_type: StageType
    provider_kind: ProviderKind
    api_key: str = field(repr=False)
    model: str
    revision: int
    status: ConfigStatus
    source: ConfigSource
    options: Mapping[str, str] = field(default_factory=dict)
    status_reason: str = ""
    status_cause: StatusCause | None = None
    models_cache: tuple[str, ...] = ()
    models_cache_updated_at: datetime | None = None
    updated_at: datetime | None = None
    api_key_fingerprint: str = ""
