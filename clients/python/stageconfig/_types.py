"""The client's domain types: plain enums and a frozen config. Proto types stop at
``_convert``; user code sees only these."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType


class StageType(enum.StrEnum):
    """A step of the content pipeline."""

    POEM = "POEM"
    VOICE = "VOICE"
    SONG = "SONG"
    CLIP = "CLIP"


class ProviderKind(enum.StrEnum):
    """An AI provider."""

    YANDEX_GPT = "YANDEX_GPT"
    GEMINI = "GEMINI"
    OPENAI = "OPENAI"
    SPEECHKIT = "SPEECHKIT"
    SUNO = "SUNO"
    PIKA = "PIKA"


class ConfigStatus(enum.StrEnum):
    """Health of a stage's config as the server last saw it."""

    ACTIVE = "ACTIVE"
    WARNING = "WARNING"
    INVALID = "INVALID"
    ERROR = "ERROR"
    UNSPECIFIED = "UNSPECIFIED"


class ConfigSource(enum.StrEnum):
    """Where the server took a config from."""

    DATABASE = "DATABASE"
    FALLBACK = "FALLBACK"
    UNCONFIGURED = "UNCONFIGURED"
    UNSPECIFIED = "UNSPECIFIED"


class ChangeReason(enum.StrEnum):
    """Why a revision was written."""

    ADMIN_UPDATE = "ADMIN_UPDATE"
    SYNC = "SYNC"
    MODEL_REPLACED = "MODEL_REPLACED"
    ROLLBACK = "ROLLBACK"
    IMPORT = "IMPORT"
    UNSPECIFIED = "UNSPECIFIED"


def _mask(key: str) -> str:
    return f"…{key[-4:]}" if len(key) >= 12 else "…"


@dataclass(frozen=True, slots=True)
class StageConfig:
    """One stage's provider configuration, immutable.

    ``api_key`` is plaintext when the caller has the worker role, a mask otherwise
    (``api_key_masked``). ``repr`` never shows a plaintext key.
    """

    stage_type: StageType
    provider_kind: ProviderKind
    api_key: str = field(repr=False)
    model: str
    revision: int
    status: ConfigStatus
    source: ConfigSource
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    status_reason: str = ""
    api_key_masked: bool = False
    api_key_fingerprint: str = ""
    updated_at: datetime | None = None
    models_cache_updated_at: datetime | None = None

    def __repr__(self) -> str:
        key = self.api_key if self.api_key_masked else _mask(self.api_key)
        return (
            f"StageConfig(stage_type={self.stage_type.value}, "
            f"provider_kind={self.provider_kind.value}, model={self.model!r}, "
            f"revision={self.revision}, status={self.status.value}, "
            f"source={self.source.value}, api_key={key!r})"
        )

    __str__ = __repr__
