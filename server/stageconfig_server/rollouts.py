"""Safe rollouts (issue 15), the service side: promote, abort, and what every start or
end tells admins.

A rollout starts through UpdateConfig (``updates.py``: the candidate takes exactly the
path of an update — validation, provider verification, encryption — and is committed
with ``ConfigView.start_rollout``). It ends here, by an admin (PromoteRollout,
AbortRollout) or by the automatic policy (``rollout_judge.py``), always through
``end``: one compare-and-set in the database, then a history entry (written by that
same transaction), a log line, an admin event and a metric.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime

from stageconfig_server.admin_events import AdminEvents, RolloutEvent
from stageconfig_server.domain import StageConfig
from stageconfig_server.rollout_types import (
    ROLLOUT_ACTOR,
    RolloutEnd,
    RolloutRecord,
    RolloutState,
    RolloutView,
    Side,
)
from stageconfig_server.validation import check_comment, check_revision
from stageconfig_server.view import ConfigChange, ConfigView

log = logging.getLogger(__name__)

SidesReader = Callable[[RolloutRecord], Awaitable[tuple[Side, Side]]]
"""A rollout's canary and stable sides from the fleet reports."""
RolloutListener = Callable[[RolloutRecord, str], None]
"""Called with a rollout that started or ended and its trigger (manual, automatic)."""

_EVENTS = {
    RolloutState.RUNNING: "rollout_started",
    RolloutState.PROMOTED: "rollout_promoted",
    RolloutState.ABORTED: "rollout_aborted",
}


async def _no_sides(record: RolloutRecord) -> tuple[Side, Side]:
    """Without fleet reports: both sides empty."""
    return Side(record.candidate_revision), Side(record.stable_revision)


class Rollouts:
    """Ends rollouts and announces their starts and ends."""

    def __init__(
        self, view: ConfigView, events: AdminEvents, clock: Callable[[], datetime]
    ) -> None:
        self._view = view
        self._events = events
        self._clock = clock
        self._sides: SidesReader = _no_sides
        self._listeners: list[RolloutListener] = []

    def attach_sides(self, sides: SidesReader) -> None:
        """Read each side's clients and outcomes with ``sides`` (the fleet's)."""
        self._sides = sides

    def add_listener(self, listener: RolloutListener) -> None:
        """Call ``listener(record, trigger)`` after every start and end (metrics)."""
        self._listeners.append(listener)

    async def view_of(self, record: RolloutRecord) -> RolloutView:
        """The rollout with both sides' figures."""
        canary, stable = await self._sides(record)
        # The candidate's state holds its revision; its routes' keys come with it.
        return RolloutView(record, self._view.config_of(record.candidate), canary, stable)

    async def sides(self, record: RolloutRecord) -> tuple[Side, Side]:
        """The canary and stable sides of ``record`` (for the judge)."""
        return await self._sides(record)

    async def announce_start(self, record: RolloutRecord) -> None:
        """Log, event and metric for a rollout that just started."""
        await self._announce(record, record.candidate_revision, record.started_by, "manual")

    async def end_by_admin(self, end: RolloutEnd) -> tuple[StageConfig, RolloutView]:
        """PromoteRollout / AbortRollout: end the stage's running rollout now.

        RolloutConflict when none runs, RevisionConflict when its candidate is not at
        ``end.expected_candidate``, InvalidArgument for a bad comment or revision."""
        check_comment(end.comment)
        check_revision("expected_revision", end.expected_candidate)
        verb = "promoted" if end.outcome is RolloutState.PROMOTED else "aborted"
        decision = f"{verb} by {end.actor}"
        change = await self.end(
            replace(end, decision=decision, comment=end.comment or f"rollout {decision}"),
            trigger="manual",
        )
        assert change.rollout is not None  # an end always carries its rollout
        return change.config, await self.view_of(change.rollout)

    async def end(self, end: RolloutEnd, *, trigger: str) -> ConfigChange:
        """End the running rollout of ``end.stage_type`` (one writer wins across
        replicas) and announce it."""
        change = await self._view.end_rollout(end)
        if change.rollout is not None:
            await self._announce(change.rollout, change.revision, end.actor, trigger)
        return change

    async def _announce(
        self, record: RolloutRecord, revision: int, actor: str, trigger: str
    ) -> None:
        event = RolloutEvent(
            event=_EVENTS[record.state],
            stage_type=record.stage_type,
            rollout_id=record.id,
            candidate_revision=record.candidate_revision,
            stable_revision=record.stable_revision,
            revision=revision,
            actor=actor,
            decision=record.decision,
            at=self._clock(),
        )
        log.info(
            "rollout %d of stage %s %s at revision %d (%s, by %s)%s",
            record.id,
            record.stage_type.value,
            record.state.value.lower(),
            revision,
            trigger,
            actor,
            f": {record.decision}" if record.decision else "",
        )
        for listener in self._listeners:
            try:
                listener(record, trigger)
            except Exception:  # a broken listener must not undo a committed decision
                log.exception("rollout listener failed for rollout %d", record.id)
        await self._events.rollout(event)


__all__ = ["ROLLOUT_ACTOR", "RolloutListener", "Rollouts", "SidesReader"]
