"""What the admin calls return: frozen dataclasses, re-exported by ``stageconfig.admin``.

Proto messages never reach these; ``_admin_convert`` builds them. A value a newer server
sends that this client does not know never makes them fail: statuses and reasons are
UNSPECIFIED, a stage this client cannot name is left out of a list, and a provider kind
it cannot name is kept as its number (``unknown_provider_kind``) so the stage still shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from stageconfig._types import (
    ChangeReason,
    ConfigSource,
    ConfigStatus,
    ProviderKind,
    StageConfig,
    StageType,
)


def provider_name(kind: ProviderKind | None, unknown_number: int) -> str:
    """How a provider kind is shown: its name, or ``UNKNOWN(99)`` for a number only a
    newer server knows."""
    return kind.value if kind is not None else f"UNKNOWN({unknown_number})"


@dataclass(frozen=True, slots=True)
class StageView:
    """One stage as an admin sees it (ListConfigs)."""

    stage_type: StageType
    source: ConfigSource
    """DATABASE, FALLBACK (legacy env of the server) or UNCONFIGURED (UNSPECIFIED: a
    source this client does not know)."""
    config: StageConfig | None
    """The config, key masked; None when the stage is UNCONFIGURED, or when its provider
    kind is one this client does not know (``unknown_provider_kind``)."""
    models: tuple[str, ...]
    """The cached model list (models_cache); empty unless stored."""
    allowed_providers: tuple[ProviderKind, ...]
    """The providers this stage may use (those this client knows)."""
    revision: int = 0
    """The stage's stored revision (0: nothing stored), what ``expected_revision`` wants."""
    unknown_provider_kind: int = 0
    """The number of the stored provider kind when this client does not know it (a newer
    server); 0 otherwise."""

    @property
    def provider(self) -> str:
        """The stored provider's name, ``UNKNOWN(n)`` for one this client does not know,
        empty when nothing is configured."""
        if self.config is not None:
            return self.config.provider_kind.value
        return provider_name(None, self.unknown_provider_kind) if self.unknown_provider_kind else ""


@dataclass(frozen=True, slots=True)
class ConfigOverview:
    """Every stage (ListConfigs) and the server's head revision."""

    stages: tuple[StageView, ...]
    head_revision: int

    def stage(self, stage: StageType | str) -> StageView:
        """The view of one stage."""
        wanted = StageType(stage)
        for view in self.stages:
            if view.stage_type is wanted:
                return view
        raise KeyError(wanted.value)


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """What UpdateConfig stored (or, with ``validate_only``, would store)."""

    config: StageConfig
    """The config, key masked."""
    models: tuple[str, ...]
    """The models the provider offers for this key."""
    written: bool
    """False with ``validate_only``."""


@dataclass(frozen=True, slots=True)
class ModelList:
    """A stage's cached model list (ListModels)."""

    models: tuple[str, ...]
    updated_at: datetime | None
    selected_model: str
    provider_kind: ProviderKind | None
    """None when the provider kind is one this client does not know
    (``unknown_provider_kind`` has its number)."""
    status: ConfigStatus
    status_reason: str
    unknown_provider_kind: int = 0
    """The number of a provider kind this client does not know; 0 otherwise."""

    @property
    def provider(self) -> str:
        """The provider's name, or ``UNKNOWN(n)``."""
        return provider_name(self.provider_kind, self.unknown_provider_kind)


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """What one stage's model refresh found (RefreshModels)."""

    stage_type: StageType
    status: ConfigStatus
    status_reason: str
    models: tuple[str, ...]
    selected_model: str
    replaced_model: str
    """The model that vanished and was replaced; empty when none was."""
    revision: int
    """The stage's revision after the refresh."""


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field's old and new value in a history entry (keys masked)."""

    field: str
    old_value: str
    new_value: str


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One revision of the log."""

    revision: int
    stage_type: StageType
    time: datetime | None
    actor: str
    """The token name that made the change, or the sync's name."""
    reason: ChangeReason
    changes: tuple[FieldChange, ...]
    comment: str


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of history, newest first; pass ``next_page_token`` for the next one."""

    entries: tuple[HistoryEntry, ...]
    """The page's entries (those of stages this client knows)."""
    next_page_token: str
    """Empty on the last page."""


@dataclass(frozen=True, slots=True)
class WatcherInfo:
    """One connected WatchConfig stream (ListWatchers)."""

    client_id: str
    peer: str
    actor: str
    stage_types: tuple[StageType, ...]
    """The stages it watches (those this client knows)."""
    connected_since: datetime | None
    last_revision: int
    """The newest revision the stream has been sent."""


@dataclass(frozen=True, slots=True)
class WatcherList:
    """Every connected stream and the server's head revision."""

    watchers: tuple[WatcherInfo, ...]
    head_revision: int


@dataclass(frozen=True, slots=True)
class SnapshotEvent:
    """Every watched stage at one revision (the first event, or after a gap)."""

    revision: int
    configs: tuple[StageConfig, ...]


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One stage at a new revision."""

    revision: int
    config: StageConfig
    reason: ChangeReason


@dataclass(frozen=True, slots=True)
class HeartbeatEvent:
    """The stream is alive; the server is at ``head_revision``."""

    head_revision: int
    server_time: datetime | None


WatchEvent = SnapshotEvent | ChangeEvent | HeartbeatEvent
"""What ``AdminClient.watch`` yields."""
