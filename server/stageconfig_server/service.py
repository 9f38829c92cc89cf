"""The service layer's front door: every operation on stage configs, knowing nothing
of gRPC, SQL or HTTP.

``ConfigService`` assembles the rooms and hands each call to the one that owns it:

    view.ConfigView         the in-memory view (reads, snapshots) and the commit path
    updates.ConfigUpdates   update / rollback / import: validation → key → provider → commit
    refresh.ModelRefresher  the model refresh (the daily sync, RefreshModels)
    history.read_history    GetConfigHistory's pages
    rollouts.Rollouts       PromoteRollout / AbortRollout and every rollout's announcement
    verification            the bounded provider call both updates and refresh use

Storage is reached only through the ``store.ConfigStore`` Protocol. The transport gets
domain types back (``StageConfig``, ``HistoryEntry``, the views below), never records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from stageconfig_server.admin_events import AdminEvents
from stageconfig_server.crypto import KeyCipher
from stageconfig_server.db.records import LogEntry
from stageconfig_server.domain import ProviderKind, StageConfig, StageType
from stageconfig_server.fallback import fallback_config
from stageconfig_server.history import HistoryPage, read_history
from stageconfig_server.providers.base import ProviderAdapter
from stageconfig_server.refresh import (
    SYSTEM_ACTOR,
    ModelRefresher,
    RefreshListener,
    RefreshOutcome,
    Served,
)
from stageconfig_server.rollout_types import RolloutEnd, RolloutRecord, RolloutView
from stageconfig_server.rollouts import Rollouts
from stageconfig_server.settings import LegacySettings
from stageconfig_server.store import ConfigStore
from stageconfig_server.updates import ConfigUpdates, UpdateRequest, UpdateResult
from stageconfig_server.verification import ProviderCheck
from stageconfig_server.view import (
    ChangeListener,
    ConfigChange,
    ConfigView,
    ModelsView,
    StageView,
)


class ConfigService:
    """Stage configs: read, change, verify with providers, refresh, history, rollback."""

    def __init__(
        self,
        repository: ConfigStore,
        cipher: KeyCipher,
        adapters: Mapping[ProviderKind, ProviderAdapter],
        legacy: LegacySettings,
        *,
        events: AdminEvents,
        provider_timeout_seconds: float = 10.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._store = repository
        now = clock or (lambda: datetime.now(UTC))
        # The legacy env is read once at start: build each stage's fallback once too, so
        # reads hand out the same object (the servicer's encoded-answer cache keys on it).
        fallbacks = {stage: fallback_config(legacy, stage) for stage in StageType}
        check = ProviderCheck(adapters, provider_timeout_seconds)
        self._view = ConfigView(repository, cipher, fallbacks)
        self._updates = ConfigUpdates(self._view, repository, cipher, check, now)
        self._refresher = ModelRefresher(self._view, check, events, now)
        self.rollouts = Rollouts(self._view, events, now)
        """Rollout ends and announcements (the judge, metrics and fleet attach here)."""

    # -- lifecycle and listeners ----------------------------------------------------------

    async def load(self) -> None:
        """Read and decrypt every stored config into memory (at start)."""
        await self._view.load()

    def add_listener(self, listener: ChangeListener) -> None:
        """Call ``listener`` with every committed change, in revision order."""
        self._view.add_listener(listener)

    def add_refresh_listener(self, listener: RefreshListener) -> None:
        """Call ``listener(provider, outcome)`` after every stage refresh (for metrics)."""
        self._refresher.add_listener(listener)

    @property
    def head_revision(self) -> int:
        """The newest revision this process has applied."""
        return self._view.head_revision

    @property
    def repository(self) -> ConfigStore:
        """The store (for the broadcaster's resume reads)."""
        return self._store

    def config_at(self, entry: LogEntry) -> StageConfig:
        """The decrypted config a log entry recorded (for resuming watchers)."""
        return self._view.config_of(entry.state)

    async def catch_up(self) -> int:
        """Apply every change committed elsewhere (another replica) since the head, in
        order, and tell the listeners; returns how many were applied."""
        return await self._view.catch_up()

    # -- reads ----------------------------------------------------------------------------

    def get_active(self, stage: StageType, client_id: str = "") -> StageConfig:
        """The stage's config with its plaintext key: a running rollout's candidate for a
        client of its cohort, else stored, else the legacy fallback."""
        return self._view.get_active(stage, client_id)

    def snapshot(
        self, stages: Sequence[StageType], client_id: str = ""
    ) -> tuple[int, list[StageConfig]]:
        """Every requested stage that has a config (candidate for ``client_id`` in a
        rollout's cohort, stored or fallback), at the head."""
        return self._view.snapshot(stages, client_id)

    def running_rollout(self, stage: StageType) -> RolloutRecord | None:
        """The stage's running rollout, as this replica knows it."""
        return self._view.rollout(stage)

    async def rollout_view(self, stage: StageType) -> RolloutView | None:
        """The stage's running rollout with both sides' figures, or None."""
        record = self._view.rollout(stage)
        return await self.rollouts.view_of(record) if record is not None else None

    def list_configs(self) -> list[StageView]:
        """All four stages, configured or not."""
        return self._view.list_configs()

    async def list_models(self, stage: StageType, refresh: bool = False) -> ModelsView:
        """The stage's cached models; ``refresh`` asks the provider first (coalesced and
        rate-limited: ``list_models_served``)."""
        view, _served = await self.list_models_served(stage, refresh=refresh)
        return view

    async def list_models_served(
        self, stage: StageType, *, refresh: bool, may_refresh: bool = True
    ) -> tuple[ModelsView, Served | None]:
        """The stage's models and, when ``refresh`` was asked, how it was served: a
        caller that may not force a refresh (``may_refresh`` False) gets the cache."""
        served: Served | None = None
        if refresh:
            if may_refresh:
                served = await self._refresher.refresh_on_demand(stage)
            else:
                served = Served.NOT_ALLOWED
        return self._view.models(stage), served

    async def history(
        self, stage: StageType | None, page_size: int, page_token: str
    ) -> HistoryPage:
        """A page of the revision log, newest first."""
        return await read_history(self._store, stage, page_size, page_token)

    # -- changes --------------------------------------------------------------------------

    async def update(self, request: UpdateRequest, actor: str) -> UpdateResult:
        """Validate, verify with the provider, and store a stage's config (UpdateConfig),
        or start a rollout of it (``request.rollout``)."""
        result = await self._updates.update(request, actor)
        if result.rollout is not None:
            await self.rollouts.announce_start(result.rollout)
        return result

    async def end_rollout(self, end: RolloutEnd) -> tuple[StageConfig, RolloutView]:
        """PromoteRollout (``end.outcome`` PROMOTED) or AbortRollout (ABORTED)."""
        return await self.rollouts.end_by_admin(end)

    async def rollback(
        self, stage: StageType, to_revision: int, expected_revision: int | None, actor: str
    ) -> StageConfig:
        """Restore ``to_revision``'s provider, key, model and options as a new revision."""
        return await self._updates.rollback(stage, to_revision, expected_revision, actor)

    async def import_config(self, config: StageConfig, actor: str) -> StageConfig | None:
        """Store a legacy config for a stage that has none; None when one is stored."""
        return await self._updates.import_config(config, actor)

    async def refresh(self, stage: StageType | None = None) -> list[RefreshOutcome]:
        """Refresh the model cache of one stage or of every stored stage."""
        return await self._refresher.refresh(stage)


__all__ = [
    "SYSTEM_ACTOR",
    "ConfigChange",
    "ConfigService",
    "HistoryPage",
    "ModelsView",
    "RefreshOutcome",
    "Served",
    "StageView",
    "UpdateRequest",
    "UpdateResult",
]
