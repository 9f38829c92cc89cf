"""The ``job_runs`` ledger: which periodic job ran for which period, so that a job runs
once per period even when several replicas fire together (PostgreSQL serializes them
on an advisory lock; the table's key refuses a second claim everywhere)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from stageconfig_server.db.database import Database
from stageconfig_server.db.models import JobRunRow
from stageconfig_server.db.rows import utc

_jobs = cast(Table, JobRunRow.__table__)
_SYNC_LOCK_KEY = 0x5C_0F_16  # advisory-lock key of the periodic jobs


class JobRuns(Database):
    """Claims and records runs of periodic jobs."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(engine)
        self._clock = clock or (lambda: datetime.now(UTC))

    async def last_job_finish(self, job: str) -> datetime | None:
        """When ``job`` last finished (any period), or None."""
        async with self._read() as conn:
            value = (
                await conn.execute(select(func.max(_jobs.c.finished_at)).where(_jobs.c.job == job))
            ).scalar()
        return utc(value)

    async def claim_job_run(self, job: str, period: str) -> bool:
        """Record that ``job`` runs for ``period``; False when another run already claimed it."""
        try:
            async with self._write() as conn:
                if conn.dialect.name == "postgresql":
                    # Replicas firing together queue here; the loser then sees the row.
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SYNC_LOCK_KEY}
                    )
                exists = (
                    await conn.execute(
                        select(_jobs.c.job).where(_jobs.c.job == job, _jobs.c.period == period)
                    )
                ).first()
                if exists:
                    return False
                await conn.execute(
                    insert(_jobs).values(job=job, period=period, started_at=self._clock())
                )
        except IntegrityError:
            return False
        return True

    async def finish_job_run(self, job: str, period: str, outcome: str) -> None:
        """Mark a claimed run finished with a one-line outcome."""
        async with self._write() as conn:
            await conn.execute(
                update(_jobs)
                .where(_jobs.c.job == job, _jobs.c.period == period)
                .values(finished_at=self._clock(), outcome=outcome)
            )
