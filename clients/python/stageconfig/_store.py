"""The client's in-memory config: an immutable snapshot, swapped whole.

Only the watch thread writes (``SnapshotStore.replace`` / ``apply`` / ``advance``);
any thread reads ``current`` without a lock, because replacing one attribute that
points at a frozen object is atomic — a reader sees the old snapshot or the new one,
never a mix. Every write reports which stages changed, old and new.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from stageconfig._types import StageConfig, StageType


class SnapshotSource(enum.StrEnum):
    """Where the data of a snapshot last came from."""

    SNAPSHOT = "SNAPSHOT"
    """A snapshot message of the stream (a fresh start, or a resume the server could
    not serve from its retained log)."""
    CHANGE = "CHANGE"
    """A change message of the stream (live, or missed and replayed on resume)."""
    HEARTBEAT = "HEARTBEAT"
    """A heartbeat: the data is unchanged and current up to the server's head."""
    CACHE = "CACHE"
    """The last-known-good file, read at start while the server is not reachable yet."""


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """Every watched stage's config at one revision; immutable.

    A watched stage missing from ``configs`` has no config (nothing stored on the
    server and no legacy fallback).
    """

    revision: int
    """The server revision this snapshot is current at."""
    configs: Mapping[StageType, StageConfig]
    """The configs by stage (read-only)."""
    stages: frozenset[StageType]
    """The stages the client watches."""
    source: SnapshotSource
    """What last changed this snapshot."""

    def get(self, stage: StageType) -> StageConfig | None:
        """The stage's config, or None when it has none."""
        return self.configs.get(stage)


@dataclass(frozen=True, slots=True)
class StageChange:
    """One stage's config before and after an update (None: no config)."""

    stage: StageType
    old: StageConfig | None
    new: StageConfig | None


@dataclass(frozen=True, slots=True)
class StoreUpdate:
    """What one write did: the new snapshot and the stages whose config changed."""

    snapshot: ConfigSnapshot
    changes: tuple[StageChange, ...]
    revision_moved: bool


class SnapshotStore:
    """Holds the current ConfigSnapshot (None until the first data) for a set of stages."""

    def __init__(self, stages: Iterable[StageType]) -> None:
        self._stages = frozenset(stages)
        self._current: ConfigSnapshot | None = None

    @property
    def stages(self) -> frozenset[StageType]:
        """The watched stages."""
        return self._stages

    @property
    def current(self) -> ConfigSnapshot | None:
        """The current snapshot; None before any data arrived."""
        return self._current

    def replace(
        self,
        revision: int,
        configs: Iterable[StageConfig],
        source: SnapshotSource,
        keep: Iterable[StageType] = (),
    ) -> StoreUpdate:
        """Take a whole new state (a snapshot message or the cache file): stages absent
        from ``configs`` have no config any more — except those in ``keep`` (the snapshot
        holds a config for them this client cannot read), which keep the one they had."""
        new = {c.stage_type: c for c in configs if c.stage_type in self._stages}
        old = dict(self._current.configs) if self._current is not None else {}
        for stage in keep:
            if stage in self._stages and stage in old:
                new[stage] = old[stage]
        changes = tuple(
            StageChange(stage, old.get(stage), new.get(stage))
            for stage in sorted(self._stages)
            if old.get(stage) != new.get(stage)
        )
        return self._swap(revision, new, changes, source)

    def apply(self, revision: int, config: StageConfig) -> StoreUpdate | None:
        """Take one stage's change; None when it is not newer than what is held, or not
        a watched stage."""
        current = self._current
        if current is None or revision <= current.revision:
            return None
        if config.stage_type not in self._stages:
            return None
        new = dict(current.configs)
        old_config = new.get(config.stage_type)
        new[config.stage_type] = config
        changes: tuple[StageChange, ...] = ()
        if old_config != config:
            changes = (StageChange(config.stage_type, old_config, config),)
        return self._swap(revision, new, changes, SnapshotSource.CHANGE)

    def advance(
        self, revision: int, source: SnapshotSource = SnapshotSource.HEARTBEAT
    ) -> StoreUpdate | None:
        """Move the revision, keep the data: the server says everything up to
        ``revision`` was sent (a heartbeat), or sent a change this client cannot read
        (``source`` CHANGE). None when there is nothing to move."""
        current = self._current
        if current is None or revision <= current.revision:
            return None
        return self._swap(revision, dict(current.configs), (), source)

    def _swap(
        self,
        revision: int,
        configs: dict[StageType, StageConfig],
        changes: tuple[StageChange, ...],
        source: SnapshotSource,
    ) -> StoreUpdate:
        previous = self._current
        snapshot = ConfigSnapshot(
            revision=revision,
            configs=MappingProxyType(configs),
            stages=self._stages,
            source=source,
        )
        self._current = snapshot  # the one atomic swap readers observe
        moved = previous is None or previous.revision != revision
        return StoreUpdate(snapshot, changes, moved)
