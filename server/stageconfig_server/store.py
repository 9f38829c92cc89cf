"""What the service needs of storage, in the service's terms: the ``ConfigStore``
Protocol. ``db.repository.Repository`` is the real one; the service modules depend on
this Protocol only, so they never see SQL, a row or an engine."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from stageconfig_server.db.records import ConfigWrite, LogEntry, StoredConfig, StoredKey
from stageconfig_server.domain import HistoryEntry, ProviderKind, StageType
from stageconfig_server.rollout_types import RolloutEnd, RolloutRecord, RolloutSpec


class ConfigStore(Protocol):
    """Stored stage configs, the keys ever entered and the revision log."""

    async def list_all(self) -> dict[StageType, StoredConfig]:
        """Every stored config, by stage."""
        ...

    async def head_revision(self) -> int:
        """The newest revision written (0 before the first write)."""
        ...

    async def write_config(
        self, write: ConfigWrite, expected_revision: int | None = None
    ) -> tuple[StoredConfig, LogEntry]:
        """Store one change and its log entry atomically at the next revision; raise
        RevisionConflict (writing nothing) when the stage is not at ``expected_revision``
        (0: the stage must not exist yet)."""
        ...

    async def touch_models_cache(
        self, stage: StageType, updated_at: datetime, expected_revision: int
    ) -> bool:
        """Move the cache's time without a new revision; False when the stage moved on."""
        ...

    async def newest_key(self, provider: ProviderKind) -> StoredKey | None:
        """The most recently saved key for ``provider`` (any stage)."""
        ...

    async def log_since(
        self, revision: int, limit: int | None = None, upto: int | None = None
    ) -> Sequence[LogEntry]:
        """Log entries after ``revision`` (up to ``upto`` inclusive), oldest first."""
        ...

    async def log_entry(self, revision: int) -> LogEntry | None:
        """The log entry of one revision."""
        ...

    async def history(
        self, stage: StageType | None, before_revision: int | None, limit: int
    ) -> Sequence[HistoryEntry]:
        """Log entries as admins see them, newest first."""
        ...

    async def running_rollouts(self) -> Sequence[RolloutRecord]:
        """Every running rollout (at most one per stage)."""
        ...

    async def rollouts_by_id(self, ids: Collection[int]) -> Mapping[int, RolloutRecord]:
        """The rollouts of ``ids``, running or ended."""
        ...

    async def start_rollout(
        self, write: ConfigWrite, expected_revision: int | None, spec: RolloutSpec
    ) -> tuple[RolloutRecord, LogEntry]:
        """Write ``write`` as a rollout's candidate, for its cohort only."""
        ...

    async def end_rollout(self, end: RolloutEnd) -> tuple[RolloutRecord, LogEntry]:
        """Promote or abort the stage's running rollout (one writer wins)."""
        ...
