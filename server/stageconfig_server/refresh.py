"""The model refresh: re-ask each stored stage's provider what its key can use.

Run by the daily sync (``sync.ModelSync``), by RefreshModels and by ListModels with
``refresh``. A stage whose selected model vanished switches to the first one offered,
turns WARNING, and an admin event says so; a failed call keeps the last good cache and
model; a refresh that finds nothing new moves only the cache's time (no revision, so
no worker wakes up). The stored key is reused as the view holds it: nothing is read
back from the database.

Provider calls are coalesced per stage: while one is in flight, every other refresh of
that stage (ListModels, RefreshModels, the sync) shares its outcome instead of calling
again. On-demand refreshes (``refresh_on_demand``, ListModels with ``refresh``) are also
rate-limited: within ``min_interval_seconds`` of the stage's last provider call they get
the cached list, and the answer says how it was served (``Served``).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from stageconfig_server.admin_events import AdminEvents, ModelReplaced
from stageconfig_server.db.records import StoredRoute
from stageconfig_server.domain import (
    ChangeReason,
    ConfigStatus,
    ProviderKind,
    StageConfig,
    StageType,
    StatusCause,
)
from stageconfig_server.errors import NotFound, RevisionConflict
from stageconfig_server.verification import ProviderCheck, Settled, Verdict
from stageconfig_server.view import ConfigView

SYSTEM_ACTOR = "stageconfig-sync"
"""The actor the revision log records for refresh changes."""


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    """What one stage's model refresh found."""

    stage_type: StageType
    status: ConfigStatus
    status_reason: str
    models: tuple[str, ...]
    selected_model: str
    replaced_model: str
    revision: int

    @classmethod
    def of(cls, config: StageConfig, replaced: str = "") -> RefreshOutcome:
        """The outcome that leaves the stage at ``config``."""
        return cls(
            stage_type=config.stage_type,
            status=config.status,
            status_reason=config.status_reason,
            models=config.models_cache,
            selected_model=config.model,
            replaced_model=replaced,
            revision=config.revision,
        )


RefreshListener = Callable[[ProviderKind, RefreshOutcome], None]

MIN_REFRESH_INTERVAL_SECONDS = 30.0
"""At most one on-demand provider call per stage in this many seconds."""


class Served(enum.StrEnum):
    """How an on-demand refresh was answered (the transport tells the caller)."""

    REFRESHED = "refreshed"
    """This call asked the provider."""
    JOINED = "joined"
    """A refresh of the stage was in flight; this call shared its outcome."""
    CACHED = "cached"
    """The stage's provider was asked moments ago; this call got the cached list."""
    NOT_ALLOWED = "cached-for-workers"
    """The caller may not force a refresh; it got the cached list."""


class ModelRefresher:
    """Refreshes model caches through the view."""

    def __init__(
        self,
        view: ConfigView,
        check: ProviderCheck,
        events: AdminEvents,
        clock: Callable[[], datetime],
    ) -> None:
        self._view = view
        self._check = check
        self._events = events
        self._clock = clock
        self._listeners: list[RefreshListener] = []
        self._in_flight: dict[StageType, asyncio.Task[RefreshOutcome]] = {}
        self._last_call: dict[StageType, float] = {}
        self.min_interval_seconds = MIN_REFRESH_INTERVAL_SECONDS
        """On-demand refreshes of a stage within this long of its last provider call
        are answered from the cache."""

    def add_listener(self, listener: RefreshListener) -> None:
        """Call ``listener(provider, outcome)`` after every stage refresh (for metrics)."""
        self._listeners.append(listener)

    async def refresh(self, stage: StageType | None = None) -> list[RefreshOutcome]:
        """Refresh the model cache of one stage or of every stored stage.

        Providers are asked concurrently, so a hanging one delays nobody else (each is
        bounded by the provider timeout).
        """
        if stage is not None and self._view.stored(stage) is None:
            raise NotFound(f"no config is stored for stage {stage.value}: nothing to refresh")
        stages = [stage] if stage is not None else self._view.stored_stages()
        return list(await asyncio.gather(*(self._coalesced(s)[0] for s in stages)))

    async def refresh_on_demand(self, stage: StageType) -> Served:
        """Refresh one stage unless a refresh is in flight (then share it) or its
        provider was asked within ``min_interval_seconds`` (then serve the cache);
        NotFound when nothing is stored. Says how the call was served."""
        if self._view.stored(stage) is None:
            raise NotFound(f"no config is stored for stage {stage.value}: nothing to refresh")
        last = self._last_call.get(stage)
        if stage not in self._in_flight and (
            last is not None and time.monotonic() - last < self.min_interval_seconds
        ):
            return Served.CACHED
        waiting, joined = self._coalesced(stage)
        await waiting
        return Served.JOINED if joined else Served.REFRESHED

    def _coalesced(self, stage: StageType) -> tuple[asyncio.Future[RefreshOutcome], bool]:
        """The stage's refresh in flight (joined: True) or a new one. Shielded: a caller
        that gives up does not cancel the call the others wait for."""
        task = self._in_flight.get(stage)
        if task is not None:
            return asyncio.shield(task), True
        task = asyncio.get_running_loop().create_task(self._call_and_tell(stage))
        self._in_flight[stage] = task
        self._last_call[stage] = time.monotonic()

        def finished(_task: asyncio.Task[RefreshOutcome]) -> None:
            self._in_flight.pop(stage, None)
            self._last_call[stage] = time.monotonic()

        task.add_done_callback(finished)
        return asyncio.shield(task), False

    async def _call_and_tell(self, stage: StageType) -> RefreshOutcome:
        outcome = await self._refresh_stage(stage)
        config = self._view.stored(stage)
        if config is not None:
            for listener in self._listeners:
                listener(config.provider_kind, outcome)
        return outcome

    async def _refresh_stage(self, stage: StageType) -> RefreshOutcome:
        before = self._view.stored(stage)
        if before is None:
            raise NotFound(f"no config is stored for stage {stage.value}: nothing to refresh")
        # Every route's provider too (concurrently): a fallback's vanished model is
        # replaced like the primary's.
        verdict, *route_verdicts = await asyncio.gather(
            self._check.verdict(before.provider_kind, before.api_key, before.options),
            *(self._check.verdict(r.provider_kind, r.api_key, r.options) for r in before.fallbacks),
        )
        # Re-read after the (slow) provider call: an admin may have changed the stage.
        held = self._view.held(stage)
        if held is None or held.config.revision != before.revision:
            return RefreshOutcome.of(held.config if held else before)
        current, now = held.config, self._clock()
        found = _found(current, verdict, now)
        routes, replaced_routes = _found_routes(held.routes, current, route_verdicts, now)
        if found is None and routes is not None:  # only routes changed: the primary stays
            found = _kept(current), ""
        if found is None:
            # Only the cache's age moved (or nothing): record it without a new revision,
            # so a daily sync that finds nothing new does not wake every worker.
            if verdict.models is not None and now != current.models_cache_updated_at:
                await self._view.touch_cache(current, now)
            return RefreshOutcome.of(self._view.stored(stage) or current)
        settled, replaced = found
        write = settled.write(
            stage,
            current.provider_kind,
            ciphertext=held.api_key_encrypted,
            key_fingerprint=current.api_key_fingerprint,
            key_id=held.api_key_id,
            new_key=False,
            options=current.options,
            actor=SYSTEM_ACTOR,
            reason=(
                ChangeReason.MODEL_REPLACED if replaced or replaced_routes else ChangeReason.SYNC
            ),
        )
        write = replace(write, fallbacks=routes)  # None: the routes stay as stored
        try:
            change = await self._view.commit(write, current.revision, current.api_key)
        except RevisionConflict:
            return RefreshOutcome.of(self._view.stored(stage) or current)
        replacements = [(current.provider_kind, replaced, settled.model)] if replaced else []
        for provider, old, new in replacements + replaced_routes:
            await self._events.model_replaced(
                ModelReplaced(
                    stage_type=stage,
                    provider_kind=provider,
                    old_model=old,
                    new_model=new,
                    revision=change.revision,
                    at=self._clock(),
                )
            )
        return RefreshOutcome.of(change.config, replaced)


def _kept(current: StageConfig) -> Settled:
    """The primary as it is (a refresh that changes only fallback routes)."""
    return Settled(
        current.model,
        current.models_cache,
        current.models_cache_updated_at,
        current.status,
        current.status_cause,
        current.status_reason,
    )


def _found_routes(
    stored: Sequence[StoredRoute],
    current: StageConfig,
    verdicts: Sequence[Verdict],
    now: datetime,
) -> tuple[tuple[StoredRoute, ...] | None, list[tuple[ProviderKind, str, str]]]:
    """The fallback routes after their verdicts (None when none visibly changed) and the
    models replaced on them (provider, old, new). Each route is judged as ``_found``
    judges the primary."""
    routes, replaced, changed = [], [], False
    for route, plain, verdict in zip(stored, current.fallbacks, verdicts, strict=True):
        as_config = replace(
            current,
            provider_kind=route.provider_kind,
            model=route.model,
            models_cache=route.models_cache,
            status=route.status,
            status_cause=route.status_cause,
            status_reason=route.status_reason,
            fallbacks=(),
        )
        found = _found(as_config, verdict, now)
        if found is None:
            routes.append(route)
            continue
        settled, old = found
        changed = True
        if old:
            replaced.append((plain.provider_kind, old, settled.model))
        routes.append(
            replace(
                route,
                model=settled.model,
                models_cache=settled.models,
                status=settled.status,
                status_cause=settled.cause,
                status_reason=settled.status_reason,
            )
        )
    return (tuple(routes) if changed else None), replaced


def _found(current: StageConfig, verdict: Verdict, now: datetime) -> tuple[Settled, str] | None:
    """The visible change a verdict makes to ``current`` and the model it replaced (""
    when the selected one is still offered), or None when nothing visible changes."""
    model, replaced = current.model, ""
    models, cache_at = current.models_cache, current.models_cache_updated_at
    status, cause, reason = verdict.status, verdict.cause, verdict.reason
    if verdict.models is not None:
        models, cache_at = verdict.models, now
        if model not in models:
            replaced, model = model, models[0]
            status, cause = ConfigStatus.WARNING, StatusCause.MODEL_REPLACED
            reason = (
                f"model {replaced} is no longer offered by {current.provider_kind.value}; "
                f"switched to {model}"
            )
        elif current.status is ConfigStatus.WARNING:
            # A replacement stays flagged until an admin saves the stage.
            status, cause, reason = current.status, current.status_cause, current.status_reason
    # ERROR and INVALID keep the last good cache and model (models/model untouched).
    visible = (
        model != current.model
        or status != current.status
        or reason != current.status_reason
        or models != current.models_cache
    )
    if not visible:
        return None
    return Settled(model, models, cache_at, status, cause, reason), replaced
