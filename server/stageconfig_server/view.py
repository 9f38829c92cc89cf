"""The in-memory view of every stored config, and the one path that changes it.

What GetActiveConfig, watch snapshots and ListConfigs serve comes from here, never from
the database. For each stored stage the view holds a ``HeldConfig``: the config with its
plaintext key (what workers get) and the ciphertext and ``api_keys`` id that plaintext
came from (what an update reusing the key, a rollback or a refresh writes back). So an
update never decrypts what it just encrypted, and nothing re-reads a row to learn which
key a stage uses.

Every change goes through ``commit`` (or ``catch_up`` for changes other replicas made):
one lock serializes them, they are applied in revision order, and the listeners (the
broadcaster) hear each one once. A stage's config object is replaced, never mutated, on
every change, so object identity tells a cache whether it is still current.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from stageconfig_server.crypto import KeyCipher
from stageconfig_server.db.records import ConfigWrite, LogEntry, StoredConfig, StoredRoute
from stageconfig_server.domain import (
    ALLOWED_PROVIDERS,
    ChangeReason,
    ConfigSource,
    ConfigStatus,
    ProviderKind,
    Route,
    StageConfig,
    StageType,
)
from stageconfig_server.errors import NotFound
from stageconfig_server.rollout_types import (
    Audience,
    RolloutEnd,
    RolloutRecord,
    RolloutSpec,
)
from stageconfig_server.store import ConfigStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HeldConfig:
    """A stored stage as the view holds it."""

    config: StageConfig
    """The config with its plaintext key (source DATABASE)."""
    api_key_encrypted: str = field(repr=False)
    """The stored ciphertext of ``config.api_key`` ("" when no key is stored)."""
    api_key_id: int | None
    """The ``api_keys`` row of the key (None for rows older than that table)."""
    routes: tuple[StoredRoute, ...] = ()
    """The stored fallback routes (ciphertexts and key ids) behind ``config.fallbacks``."""


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """A committed change, as listeners (the broadcaster) receive it."""

    revision: int
    config: StageConfig
    reason: ChangeReason
    audience: str = Audience.ALL.value
    """"canary": only the cohort of ``rollout`` receives it (a rollout's start or abort)."""
    rollout: RolloutRecord | None = None
    """The rollout a ROLLOUT_* change started or ended."""


ChangeListener = Callable[[ConfigChange], None]


@dataclass(frozen=True, slots=True)
class ModelsView:
    """A stage's cached model list."""

    models: tuple[str, ...]
    updated_at: datetime | None
    selected_model: str
    provider_kind: ProviderKind
    status: ConfigStatus
    status_reason: str


@dataclass(frozen=True, slots=True)
class StageView:
    """What an admin sees of one stage (plaintext key: the transport masks it)."""

    stage_type: StageType
    config: StageConfig | None
    source: ConfigSource
    models: tuple[str, ...]
    allowed_providers: tuple[ProviderKind, ...]
    rollout: RolloutRecord | None = None
    """The stage's running rollout (``config`` is then the stable side's)."""


class ConfigView:
    """The decrypted configs at the head revision, plus the legacy fallbacks."""

    def __init__(
        self,
        store: ConfigStore,
        cipher: KeyCipher,
        fallbacks: Mapping[StageType, StageConfig | None],
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._fallbacks = fallbacks
        self._held: dict[StageType, HeldConfig] = {}
        # A running rollout per stage and its candidate; _held keeps the stable config.
        self._rollouts: dict[StageType, tuple[RolloutRecord, HeldConfig]] = {}
        self._head = 0
        self._write_lock = asyncio.Lock()
        self._listeners: list[ChangeListener] = []

    async def load(self) -> None:
        """Read and decrypt every stored config (at start)."""
        stored = await self._store.list_all()
        self._held = {stage: self._hold(row, None) for stage, row in stored.items()}
        self._rollouts = {
            r.stage_type: (r, self._hold(r.candidate, None))
            for r in await self._store.running_rollouts()
        }
        self._head = await self._store.head_revision()

    def add_listener(self, listener: ChangeListener) -> None:
        """Call ``listener`` with every committed change, in revision order."""
        self._listeners.append(listener)

    @property
    def head_revision(self) -> int:
        """The newest revision this process has applied."""
        return self._head

    # -- reads ------------------------------------------------------------------------

    def held(self, stage: StageType) -> HeldConfig | None:
        """The stage's stored config with its ciphertext and key id, or None."""
        return self._held.get(stage)

    def stored(self, stage: StageType) -> StageConfig | None:
        """The stage's stored config (no fallback), or None."""
        held = self._held.get(stage)
        return held.config if held else None

    def stored_stages(self) -> list[StageType]:
        """The stages that have a stored config, in enum order."""
        return [stage for stage in StageType if stage in self._held]

    def rollout(self, stage: StageType) -> RolloutRecord | None:
        """The stage's running rollout, or None."""
        running = self._rollouts.get(stage)
        return running[0] if running else None

    def _candidate_for(self, stage: StageType, client_id: str) -> StageConfig | None:
        running = self._rollouts.get(stage)
        if running is not None and running[0].cohort.contains(client_id):
            return running[1].config
        return None

    def get_active(self, stage: StageType, client_id: str = "") -> StageConfig:
        """The stage's config with its plaintext key: the rollout's candidate for a
        client of its cohort, else stored, else the legacy fallback."""
        config = (
            self._candidate_for(stage, client_id) or self.stored(stage) or self._fallbacks[stage]
        )
        if config is None:
            raise NotFound(
                f"no config is stored for stage {stage.value} and no legacy setting supplies one"
            )
        return config

    def snapshot(
        self, stages: Sequence[StageType], client_id: str = ""
    ) -> tuple[int, list[StageConfig]]:
        """Every requested stage that has a config (candidate for ``client_id`` in a
        cohort, stored or fallback), at the head."""
        configs = []
        for stage in stages:
            config = (
                self._candidate_for(stage, client_id)
                or self.stored(stage)
                or self._fallbacks[stage]
            )
            if config is not None:
                configs.append(config)
        return self._head, configs

    def list_configs(self) -> list[StageView]:
        """All four stages, configured or not."""
        views = []
        for stage in StageType:
            stored = self.stored(stage)
            config = stored or self._fallbacks[stage]
            if stored is not None:
                source = ConfigSource.DATABASE
            elif config is not None:
                source = ConfigSource.FALLBACK
            else:
                source = ConfigSource.UNCONFIGURED
            views.append(
                StageView(
                    stage_type=stage,
                    config=config,
                    source=source,
                    models=stored.models_cache if stored else (),
                    allowed_providers=ALLOWED_PROVIDERS[stage],
                    rollout=self.rollout(stage),
                )
            )
        return views

    def models(self, stage: StageType) -> ModelsView:
        """The stage's cached models; NotFound when nothing is stored."""
        config = self.stored(stage)
        if config is None:
            raise NotFound(f"no config is stored for stage {stage.value}: no model list is cached")
        return ModelsView(
            models=config.models_cache,
            updated_at=config.models_cache_updated_at,
            selected_model=config.model,
            provider_kind=config.provider_kind,
            status=config.status,
            status_reason=config.status_reason,
        )

    def plaintext_of(self, state: StoredConfig) -> str:
        """The plaintext key of a stored state: the held one when a stage holds the same
        ``api_keys`` row (a key's plaintext never changes, only its ciphertext is
        rotated), else decrypted."""
        return self.plaintext_of_key(state.api_key_encrypted, state.api_key_id)

    def plaintext_of_key(self, ciphertext: str, key_id: int | None) -> str:
        """The plaintext of a stored key (a primary's or a fallback route's): the held
        one when a stage holds the same ``api_keys`` row, else decrypted."""
        if not ciphertext:
            return ""
        if key_id is not None:
            for held in self._held.values():
                if held.api_key_id == key_id:
                    return held.config.api_key
                for route, plain in zip(held.routes, held.config.fallbacks, strict=False):
                    if route.api_key_id == key_id:
                        return plain.api_key
        return self._cipher.decrypt_key(ciphertext)

    def config_of(self, state: StoredConfig) -> StageConfig:
        """The decrypted config of a stored state (a log entry's, a rollout candidate's)."""
        return self._hold(state, None).config

    # -- changes ----------------------------------------------------------------------

    async def commit(
        self, write: ConfigWrite, expected_revision: int | None, plaintext: str
    ) -> ConfigChange:
        """Store ``write``, apply it (``plaintext`` is its key: nothing is decrypted) and
        tell the listeners; RevisionConflict when the stage is not at
        ``expected_revision``."""
        async with self._write_lock:
            _stored, entry = await self._store.write_config(write, expected_revision)
            if entry.revision > self._head + 1:
                # Another replica committed in between: apply its changes first, so
                # listeners see revisions in order and none is skipped.
                await self._catch_up_locked(upto=entry.revision - 1)
            change = self._apply(entry, plaintext)
        log.info(
            "stage %s now at revision %d: %s %s, status %s (%s by %s)",
            write.stage_type.value,
            entry.revision,
            write.provider_kind.value,
            write.model,
            write.status.value,
            write.reason.value,
            write.actor,
        )
        return change

    async def start_rollout(
        self, write: ConfigWrite, expected_revision: int | None, plaintext: str, spec: RolloutSpec
    ) -> ConfigChange:
        """Store ``write`` as a rollout's candidate (for its cohort only), apply it and
        tell the listeners; like ``commit``."""
        async with self._write_lock:
            record, entry = await self._store.start_rollout(write, expected_revision, spec)
            if entry.revision > self._head + 1:
                await self._catch_up_locked(upto=entry.revision - 1)
            change = self._apply(entry, plaintext, record)
        log.info(
            "stage %s rollout %d started at revision %d (stable revision %d) by %s",
            write.stage_type.value,
            record.id,
            entry.revision,
            record.stable_revision,
            write.actor,
        )
        return change

    async def end_rollout(self, end: RolloutEnd) -> ConfigChange:
        """Promote or abort the stage's running rollout, apply it, tell the listeners."""
        async with self._write_lock:
            record, entry = await self._store.end_rollout(end)
            if entry.revision > self._head + 1:
                await self._catch_up_locked(upto=entry.revision - 1)
            return self._apply(entry, None, record)

    async def catch_up(self) -> int:
        """Apply every change committed elsewhere (another replica) since the head, in
        order, and tell the listeners; returns how many were applied."""
        async with self._write_lock:
            return await self._catch_up_locked()

    async def touch_cache(self, current: StageConfig, cache_at: datetime) -> None:
        """Record a new cache time for ``current`` without a new revision (the cache's
        content did not change); nothing when the stage moved on meanwhile."""
        async with self._write_lock:
            held = self._held.get(current.stage_type)
            if held is None or held.config is not current:
                return
            if await self._store.touch_models_cache(current.stage_type, cache_at, current.revision):
                touched = replace(current, models_cache_updated_at=cache_at)
                self._held[current.stage_type] = replace(held, config=touched)

    async def _catch_up_locked(self, upto: int | None = None) -> int:
        entries = await self._store.log_since(self._head, upto=upto)
        ids = {e.rollout_id for e in entries if e.rollout_id is not None}
        rollouts = await self._store.rollouts_by_id(ids) if ids else {}
        for entry in entries:
            record = rollouts.get(entry.rollout_id) if entry.rollout_id is not None else None
            self._apply(entry, None, record)
        return len(entries)

    def _apply(
        self, entry: LogEntry, plaintext: str | None, rollout: RolloutRecord | None = None
    ) -> ConfigChange:
        held = self._hold(entry.state, plaintext)
        stage, reason = entry.stage_type, entry.reason
        if reason is ChangeReason.ROLLOUT_STARTED:
            # The candidate: the stable config stays what everyone else is served.
            if rollout is not None:
                self._rollouts[stage] = (rollout, held)
        else:
            self._held[stage] = held
        if reason in (ChangeReason.ROLLOUT_PROMOTED, ChangeReason.ROLLOUT_ABORTED):
            self._rollouts.pop(stage, None)
        self._head = max(self._head, entry.revision)
        change = ConfigChange(entry.revision, held.config, reason, entry.audience, rollout)
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:  # a broken listener must not undo a committed write
                log.exception("change listener failed at revision %d", entry.revision)
        return change

    def _hold(self, row: StoredConfig, plaintext: str | None) -> HeldConfig:
        api_key = plaintext if plaintext is not None else self.plaintext_of(row)
        route_keys = [
            self.plaintext_of_key(r.api_key_encrypted, r.api_key_id) for r in row.fallbacks
        ]
        config = stage_config(
            row, api_key, revision=row.revision, updated_at=row.updated_at, route_keys=route_keys
        )
        return HeldConfig(config, row.api_key_encrypted, row.api_key_id, row.fallbacks)


def stage_config(
    record: StoredConfig | ConfigWrite,
    api_key: str,
    *,
    revision: int,
    updated_at: datetime | None,
    route_keys: Sequence[str] = (),
) -> StageConfig:
    """The config a stored row (or a write about to be stored) describes, with its
    plaintext key (and its fallback routes' ``route_keys``, in order: one per route,
    e.g. from ``ConfigView.plaintext_of_key``); the one place a record becomes what
    workers and admins see."""
    routes = record.fallbacks or ()
    if len(route_keys) != len(routes):
        raise ValueError(f"{len(routes)} fallback routes need as many route_keys")
    return StageConfig(
        stage_type=record.stage_type,
        provider_kind=record.provider_kind,
        api_key=api_key,
        model=record.model,
        revision=revision,
        status=record.status,
        source=ConfigSource.DATABASE,
        options=dict(record.options),
        status_reason=record.status_reason,
        status_cause=record.status_cause,
        models_cache=tuple(record.models_cache),
        models_cache_updated_at=record.models_cache_updated_at,
        updated_at=updated_at,
        api_key_fingerprint=record.api_key_fingerprint,
        fallbacks=plain_routes(routes, route_keys),
    )


def plain_routes(routes: Sequence[StoredRoute], keys: Sequence[str]) -> tuple[Route, ...]:
    """Stored routes as workers and admins see them, with their plaintext ``keys``."""
    return tuple(
        Route(
            provider_kind=route.provider_kind,
            api_key=key,
            model=route.model,
            options=dict(route.options),
            status=route.status,
            status_reason=route.status_reason,
            status_cause=route.status_cause,
            api_key_fingerprint=route.api_key_fingerprint,
            models_cache=tuple(route.models_cache),
        )
        for route, key in zip(routes, keys, strict=True)
    )
