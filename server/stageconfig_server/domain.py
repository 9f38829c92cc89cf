"""The domain: stages, providers, statuses and the allowed matrix.

The allowed matrix and the provider options are the contract's facts
(``stageconfig_contract.facts``) in the server's typed terms. It knows nothing of gRPC,
SQL or HTTP.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from stageconfig_contract import facts


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
    ROLLOUT_STARTED = "ROLLOUT_STARTED"
    ROLLOUT_PROMOTED = "ROLLOUT_PROMOTED"
    ROLLOUT_ABORTED = "ROLLOUT_ABORTED"


class BreakerState(enum.StrEnum):
    """A route's circuit breaker in one worker process (fallback routing)."""

    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


ALLOWED_PROVIDERS: Mapping[StageType, tuple[ProviderKind, ...]] = {
    StageType[stage]: tuple(ProviderKind[kind] for kind in kinds)
    for stage, kinds in facts.ALLOWED_PROVIDERS.items()
}
"""The allowed matrix: the only providers each stage may choose (the contract's table)."""

KNOWN_OPTIONS: Mapping[ProviderKind, tuple[str, ...]] = {
    ProviderKind[kind]: tuple(option.name for option in options)
    for kind, options in facts.PROVIDER_OPTIONS.items()
}
"""Every option a provider understands; anything else is rejected as a typo."""

REQUIRED_OPTIONS: Mapping[ProviderKind, tuple[str, ...]] = {
    ProviderKind[kind]: tuple(option.name for option in options if option.required)
    for kind, options in facts.PROVIDER_OPTIONS.items()
}
"""Options a provider cannot work without."""


def is_allowed(stage: StageType, provider: ProviderKind) -> bool:
    """Whether ``provider`` may serve ``stage``."""
    return provider in ALLOWED_PROVIDERS[stage]


@dataclass(frozen=True, slots=True)
class Route:
    """One fallback route of a stage (issue 16): a provider, a key, a model and options
    to use, in order, when the primary fails. Plaintext key, in memory only; ``repr``
    hides it."""

    provider_kind: ProviderKind
    api_key: str = field(repr=False)
    model: str
    options: Mapping[str, str] = field(default_factory=dict)
    status: ConfigStatus = ConfigStatus.ACTIVE
    status_reason: str = ""
    status_cause: StatusCause | None = None
    api_key_fingerprint: str = ""
    models_cache: tuple[str, ...] = ()


MAX_FALLBACKS = 8
"""At most this many fallback routes per stage (route_index 0..8 with the primary)."""


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
    fallbacks: tuple[Route, ...] = ()
    """The ordered fallback routes (empty: none)."""


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One field's old and new value as shown to admins (keys only as fingerprints)."""

    field: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One revision as an admin sees it (GetConfigHistory): who changed what, and why.

    Carries no key in any form but a fingerprint inside ``diff``.
    """

    revision: int
    stage_type: StageType
    actor: str
    reason: ChangeReason
    diff: tuple[FieldDiff, ...]
    comment: str
    created_at: datetime
