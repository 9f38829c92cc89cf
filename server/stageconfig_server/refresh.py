"""The model refresh: re-ask each stored stage's provider what its key can use.

Run by the daily sync (``sync.ModelSync``), by RefreshModels and by ListModels with
``refresh``. A stage whose selected model vanished switches to the first one offered,
turns WARNING, and an admin event says so; a failed call keeps the last good cache and
model; a refresh that finds nothing new moves only the cache's time (no revision, so
no worker wakes up). The stored key is reused as the view holds it: nothing is read
back from the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from stageconfig_server.admin_events import AdminEvents, ModelReplaced
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
        outcomes = list(await asyncio.gather(*(self._refresh_stage(s) for s in stages)))
        for outcome in outcomes:
            config = self._view.stored(outcome.stage_type)
            if config is None:
                continue
            for listener in self._listeners:
                listener(config.provider_kind, outcome)
        return outcomes

    async def _refresh_stage(self, stage: StageType) -> RefreshOutcome:
        before = self._view.stored(stage)
        if before is None:
            raise NotFound(f"no config is stored for stage {stage.value}: nothing to refresh")
        verdict = await self._check.verdict(before.provider_kind, before.api_key, before.options)
        # Re-read after the (slow) provider call: an admin may have changed the stage.
        held = self._view.held(stage)
        if held is None or held.config.revision != before.revision:
            return RefreshOutcome.of(held.config if held else before)
        current, now = held.config, self._clock()
        found = _found(current, verdict, now)
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
            reason=ChangeReason.MODEL_REPLACED if replaced else ChangeReason.SYNC,
        )
        try:
            change = await self._view.commit(write, current.revision, current.api_key)
        except RevisionConflict:
            return RefreshOutcome.of(self._view.stored(stage) or current)
        if replaced:
            await self._events.model_replaced(
                ModelReplaced(
                    stage_type=stage,
                    provider_kind=current.provider_kind,
                    old_model=replaced,
                    new_model=settled.model,
                    revision=change.revision,
                    at=self._clock(),
                )
            )
        return RefreshOutcome.of(change.config, replaced)


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
