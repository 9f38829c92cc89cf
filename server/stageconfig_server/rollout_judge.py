"""The automatic rollout policy (issue 15): every ``STAGECONFIG_ROLLOUT_CHECK_SECONDS``,
each running rollout with a policy is judged from the fleet's reports.

    not yet          less than bake_seconds since the start, or fewer than min_tasks
                     canary tasks (succeeded + failed): wait. A canary that reports no
                     task at all is therefore never promoted automatically.
    promote          canary failure rate − stable failure rate ≤ max_failure_rate_increase
    abort            above it

The running rollouts are read from the database on every pass, not from memory: a
replica that restarts mid-rollout, or has not heard of a rollout another replica
started, judges it all the same. Every replica judges; the end is a compare-and-set in
the database (``db/rollouts.py``), so exactly one decision is written and the other
replicas' attempts find no running rollout and write nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from stageconfig_server.errors import RevisionConflict, RolloutConflict, StorageUnavailable
from stageconfig_server.rollout_types import (
    ROLLOUT_ACTOR,
    RolloutEnd,
    RolloutRecord,
    RolloutState,
    Side,
)
from stageconfig_server.rollouts import Rollouts
from stageconfig_server.store import ConfigStore
from stageconfig_server.view import ConfigChange

log = logging.getLogger(__name__)

DEFAULT_CHECK_SECONDS = 5.0


def decide(
    record: RolloutRecord, canary: Side, stable: Side, now: datetime
) -> tuple[RolloutState, str] | None:
    """The policy's decision on ``record`` and the figures it used, or None (wait)."""
    policy = record.policy
    if policy is None:
        return None
    baked = (now - record.started_at).total_seconds()
    if baked < policy.bake_seconds or canary.tasks < policy.min_tasks:
        return None
    increase = canary.failure_rate - stable.failure_rate
    healthy = increase <= policy.max_failure_rate_increase
    figures = (
        f"automatic {'promote' if healthy else 'abort'}: canary failure rate "
        f"{canary.failure_rate:.4f} ({canary.failed}/{canary.tasks} tasks at revision "
        f"{canary.revision}) − stable failure rate {stable.failure_rate:.4f} "
        f"({stable.failed}/{stable.tasks} tasks at revision {stable.revision}) = "
        f"{increase:+.4f} {'≤' if healthy else '>'} max increase "
        f"{policy.max_failure_rate_increase:.4f}; baked {baked:.0f} s "
        f"(≥ {policy.bake_seconds} s), min_tasks {policy.min_tasks}"
    )
    return (RolloutState.PROMOTED if healthy else RolloutState.ABORTED), figures


class RolloutJudge:
    """Judges running rollouts in the background."""

    def __init__(
        self,
        store: ConfigStore,
        rollouts: Rollouts,
        *,
        interval_seconds: float = DEFAULT_CHECK_SECONDS,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._rollouts = rollouts
        self._interval = interval_seconds
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Judge every ``interval_seconds`` until ``stop``."""
        self._task = asyncio.create_task(self._run(), name="rollout-judge")

    async def stop(self) -> None:
        """Stop judging (a decision in flight is cancelled; its transaction rolls back)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check_once(self) -> list[ConfigChange]:
        """Judge every running rollout once; the changes this replica wrote."""
        written = []
        for record in await self._store.running_rollouts():
            if record.policy is None:
                continue
            canary, stable = await self._rollouts.sides(record)
            verdict = decide(record, canary, stable, self._clock())
            if verdict is None:
                continue
            outcome, figures = verdict
            end = RolloutEnd(
                record.stage_type,
                outcome,
                ROLLOUT_ACTOR,
                figures,
                figures,
                record.candidate_revision,
            )
            try:
                written.append(await self._rollouts.end(end, trigger="automatic"))
            except (RolloutConflict, RevisionConflict):
                # Another replica (or an admin) ended it first: one decision, not two.
                log.info("rollout %d was already ended elsewhere", record.id)
        return written

    async def _run(self) -> None:
        while True:
            try:
                await self.check_once()
            except StorageUnavailable as error:
                log.warning("rollout check skipped: %s", error.message)
            except Exception:  # the loop must outlive a bug in one pass
                log.exception("rollout check failed")
            await asyncio.sleep(self._interval)
