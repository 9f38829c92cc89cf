"""The daily model sync: APScheduler's AsyncIOScheduler inside the server.

Every ``STAGECONFIG_SYNC_INTERVAL_HOURS`` it refreshes every stored stage's model cache
(``refresh.ModelRefresher``: providers asked concurrently, each bounded). A ``job_runs``
row per period makes the run happen once even when several replicas fire together,
and tells a restarted server whether the last run is older than the interval (then it
runs at once).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from stageconfig_server.errors import StorageUnavailable
from stageconfig_server.refresh import RefreshOutcome

log = logging.getLogger(__name__)

JOB_NAME = "model_sync"
MISFIRE_GRACE_SECONDS = 6 * 3600


def period_key(now: datetime, interval: timedelta) -> str:
    """The period ``now`` falls in: runs in the same period are the same run."""
    seconds = int(interval.total_seconds()) or 1
    start = int(now.timestamp()) // seconds * seconds
    return datetime.fromtimestamp(start, UTC).isoformat()


class JobLedger(Protocol):
    """The ``job_runs`` records the sync needs (``db.repository.Repository`` keeps them)."""

    async def claim_job_run(self, job: str, period: str) -> bool:
        """Record that ``job`` runs for ``period``; False when a run already claimed it."""
        ...

    async def finish_job_run(self, job: str, period: str, outcome: str) -> None:
        """Mark a claimed run finished with a one-line outcome."""
        ...

    async def last_job_finish(self, job: str) -> datetime | None:
        """When ``job`` last finished (any period), or None."""
        ...


class ModelSync:
    """Runs the sync on a schedule and on demand."""

    def __init__(
        self,
        refresh: Callable[[], Awaitable[list[RefreshOutcome]]],
        jobs: JobLedger,
        interval: timedelta,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._refresh = refresh
        self._jobs = jobs
        self._interval = interval
        self._clock = clock or (lambda: datetime.now(UTC))
        self._scheduler: AsyncIOScheduler | None = None

    async def run_once(self) -> list[RefreshOutcome] | None:
        """Run the sync for the current period unless a run (here or on another replica)
        already claimed it; returns the outcomes, or None when skipped."""
        period = period_key(self._clock(), self._interval)
        if not await self._jobs.claim_job_run(JOB_NAME, period):
            log.info("model sync for period %s already ran; skipping", period)
            return None
        outcomes: list[RefreshOutcome] = []
        try:
            outcomes = await self._refresh()
        finally:
            summary = ", ".join(f"{o.stage_type.value}={o.status.value}" for o in outcomes)
            await self._jobs.finish_job_run(JOB_NAME, period, summary or "nothing stored")
            log.info("model sync for period %s done: %s", period, summary or "nothing stored")
        return outcomes

    async def due(self) -> bool:
        """Whether the last finished run is older than the interval (or none exists)."""
        last = await self._jobs.last_job_finish(JOB_NAME)
        return last is None or self._clock() - last >= self._interval

    async def _scheduled_run(self) -> None:
        try:
            await self.run_once()
        except StorageUnavailable as error:
            # Expected while the database is down or full: health reports it; the next
            # period runs again. One line, no traceback.
            log.warning("model sync failed: %s", error.message)
        except Exception:  # the scheduler must survive a failed run
            log.exception("model sync failed")

    async def start(self) -> None:
        """Schedule the job; run it at once when the last run is older than the interval."""
        scheduler = AsyncIOScheduler(timezone=UTC)
        # APScheduler pauses a job added with next_run_time=None: pass it only when due.
        run_now = {"next_run_time": datetime.now(UTC)} if await self.due() else {}
        scheduler.add_job(
            self._scheduled_run,
            "interval",
            seconds=self._interval.total_seconds(),
            id=JOB_NAME,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=MISFIRE_GRACE_SECONDS,
            **run_now,
        )
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        """Stop scheduling (a run in progress is cancelled with the loop)."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
