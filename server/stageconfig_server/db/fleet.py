"""Storage of fleet truth: each client's latest report and its task outcomes in time
buckets, in the shared database so every replica answers from the same reports.

Idempotency is a transaction: the client's row is locked (PostgreSQL ``FOR UPDATE``;
SQLite's ``BEGIN IMMEDIATE`` serializes writers anyway), its highest counted sequence
compared, and the outcomes added in the same transaction. Two replicas handed the same
retried report therefore count it once: the second waits for the first's commit, then
sees its sequence. A first report racing another for a new client_id loses on the
primary key and is retried once, as a report of a known client. A host agent's batch
(its processes' reports) is one such transaction for all of them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stageconfig_server.db.database import Database
from stageconfig_server.db.fleet_models import FleetClientRow, FleetOutcomeRow
from stageconfig_server.db.rows import utc
from stageconfig_server.domain import StageType
from stageconfig_server.fleet import (
    MAX_CAUSES,
    ClientState,
    OutcomeBucket,
    Outcomes,
    StageState,
    StatusReport,
    merge_outcomes,
)
from stageconfig_server.fleet_routes import accumulate, route_from_json, route_to_json

_clients = cast(Table, FleetClientRow.__table__)
_outcomes = cast(Table, FleetOutcomeRow.__table__)

_IDS_PER_QUERY = 500
"""Client ids per locking read (well below any driver's bound on parameters)."""

MAX_OUTCOME_ROWS_PER_CLIENT = 60_000
"""Stored outcome buckets per client: a week of one-minute buckets for six stage
revisions at once. Beyond it the client's oldest buckets go first."""


class FleetReports(Database):
    """Reads and writes the fleet tables (implements ``fleet_service.FleetStore``)."""

    def __init__(
        self, engine: AsyncEngine, max_rows_per_client: int = MAX_OUTCOME_ROWS_PER_CLIENT
    ) -> None:
        super().__init__(engine)
        self._max_rows = max_rows_per_client

    async def record(self, report: StatusReport, now: datetime, bucket: timedelta) -> bool:
        """Store ``report``; False (nothing changed) when its sequence was already counted.

        A report from another incarnation of the client (a different host or pid) starts
        the sequence afresh: a retry always comes from the process that sent it first.
        """
        return (await self.record_many([report], now, bucket))[0]

    async def record_many(
        self, reports: Sequence[StatusReport], now: datetime, bucket: timedelta
    ) -> list[bool]:
        """Store ``reports`` in one transaction (a host agent's batch); per report, False
        when its (client_id, sequence) was already counted. All or nothing."""
        for attempt in range(2):
            try:
                async with self._write() as conn:
                    return await self._record_many(conn, reports, now, bucket)
            except IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _record_many(
        self,
        conn: AsyncConnection,
        reports: Sequence[StatusReport],
        now: datetime,
        bucket: timedelta,
    ) -> list[bool]:
        # One locking read for every client of the batch (in client_id order, so two
        # batches lock in the same order), then the decisions in memory, then one
        # executemany per kind of write: a round trip per statement, not per report.
        stored = await self._locked_clients(conn, sorted({r.client_id for r in reports}))
        existing = set(stored)
        written: dict[str, dict[str, Any]] = {}
        counted: list[bool] = []
        for report in reports:
            row = stored.get(report.client_id)
            same_process = row is not None and (row["host"], row["pid"]) == (
                report.host,
                report.pid,
            )
            if row is not None and same_process and report.sequence <= row["last_sequence"]:
                counted.append(False)
                continue
            values = _client_values(report, now)
            if row is not None and same_process:
                # The same process: its route counts add up (see ``fleet_routes``).
                values["stages"] = _with_route_totals(values["stages"], row["stages"] or [])
            stored[report.client_id] = written[report.client_id] = values
            counted.append(True)
        new = [{"client_id": c, **v} for c, v in written.items() if c not in existing]
        if new:
            await conn.execute(insert(_clients), new)
        known = [{"b_client_id": c, **v} for c, v in written.items() if c in existing]
        if known:
            await conn.execute(
                update(_clients).where(_clients.c.client_id == bindparam("b_client_id")), known
            )
        start = _bucket_start(now, bucket)
        grown: set[str] = set()
        for report, is_counted in zip(reports, counted, strict=True):
            for stage in report.stages if is_counted else ():
                for outcome in stage.outcomes:
                    if not outcome.empty and await self._add_outcome(
                        conn, report.client_id, stage.state.stage_type, start, outcome
                    ):
                        grown.add(report.client_id)
        for client_id in sorted(grown):
            await self._bound_client(conn, client_id)
        return counted

    async def _locked_clients(
        self, conn: AsyncConnection, client_ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """The stored rows of ``client_ids`` (those that exist), locked for the transaction."""
        rows: dict[str, dict[str, Any]] = {}
        for i in range(0, len(client_ids), _IDS_PER_QUERY):
            result = await conn.execute(
                select(
                    _clients.c.client_id,
                    _clients.c.last_sequence,
                    _clients.c.host,
                    _clients.c.pid,
                    _clients.c.stages,
                )
                .where(_clients.c.client_id.in_(client_ids[i : i + _IDS_PER_QUERY]))
                .order_by(_clients.c.client_id)
                .with_for_update()
            )
            for row in result:
                rows[row.client_id] = {
                    "last_sequence": row.last_sequence,
                    "host": row.host,
                    "pid": row.pid,
                    "stages": row.stages,
                }
        return rows

    async def _add_outcome(
        self,
        conn: AsyncConnection,
        client_id: str,
        stage: StageType,
        start: datetime,
        outcome: Outcomes,
    ) -> bool:
        """Add to the bucket's row; True when a new row was created."""
        key = (
            (_outcomes.c.client_id == client_id)
            & (_outcomes.c.stage_type == stage.value)
            & (_outcomes.c.revision == outcome.revision)
            & (_outcomes.c.bucket_start == start)
        )
        row = (await conn.execute(select(_outcomes).where(key))).first()
        if row is not None:
            outcome = merge_outcomes(_outcomes_from_row(row._mapping), outcome, MAX_CAUSES)
        values = {
            "succeeded": outcome.succeeded,
            "failed": outcome.failed,
            "retried": outcome.retried,
            "failures_by_cause": dict(outcome.failures_by_cause),
            "duration_buckets": list(outcome.duration_buckets),
        }
        if row is None:
            await conn.execute(
                insert(_outcomes).values(
                    client_id=client_id,
                    stage_type=stage.value,
                    revision=outcome.revision,
                    bucket_start=start,
                    **values,
                )
            )
            return True
        await conn.execute(update(_outcomes).where(key).values(**values))
        return False

    async def _bound_client(self, conn: AsyncConnection, client_id: str) -> None:
        """Drop the client's oldest buckets beyond its bound (``MAX_OUTCOME_ROWS_PER_CLIENT``)."""
        mine = _outcomes.c.client_id == client_id
        count = (await conn.execute(select(func.count()).where(mine))).scalar_one()
        if count <= self._max_rows:
            return
        cutoff = (
            await conn.execute(
                select(_outcomes.c.bucket_start)
                .where(mine)
                .order_by(_outcomes.c.bucket_start.desc())
                .offset(self._max_rows)
                .limit(1)
            )
        ).scalar_one()
        await conn.execute(delete(_outcomes).where(mine, _outcomes.c.bucket_start <= cutoff))

    async def clients(self, client_ids: Collection[str] | None = None) -> list[ClientState]:
        """Every stored client (or those of ``client_ids``), by client_id."""
        query = select(_clients).order_by(_clients.c.client_id)
        if client_ids is not None:
            query = query.where(_clients.c.client_id.in_(list(client_ids)))
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [_client_from_row(r._mapping) for r in rows]

    async def outcomes_since(
        self,
        since: datetime,
        stage: StageType | None = None,
        client_ids: Collection[str] | None = None,
    ) -> list[OutcomeBucket]:
        """Every outcome bucket starting at or after ``since`` (of one stage, of some
        clients)."""
        query = select(_outcomes).where(_outcomes.c.bucket_start >= since)
        if stage is not None:
            query = query.where(_outcomes.c.stage_type == stage.value)
        if client_ids is not None:
            query = query.where(_outcomes.c.client_id.in_(list(client_ids)))
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            OutcomeBucket(
                client_id=r.client_id,
                stage_type=StageType(r.stage_type),
                start=_aware(r.bucket_start),
                outcomes=_outcomes_from_row(r._mapping),
            )
            for r in rows
        ]

    async def prune(self, before: datetime) -> int:
        """Delete outcome buckets older than ``before`` and clients silent since before
        it (with their buckets); returns how many rows went."""
        async with self._write() as conn:
            gone = (
                await conn.execute(delete(_outcomes).where(_outcomes.c.bucket_start < before))
            ).rowcount
            old = select(_clients.c.client_id).where(_clients.c.last_report_time < before)
            gone += (
                await conn.execute(delete(_outcomes).where(_outcomes.c.client_id.in_(old)))
            ).rowcount
            gone += (
                await conn.execute(delete(_clients).where(_clients.c.last_report_time < before))
            ).rowcount
        return int(gone)


def _client_values(report: StatusReport, now: datetime) -> dict[str, Any]:
    """A client's row (without its id) as ``report`` leaves it."""
    return {
        "host": report.host,
        "pid": report.pid,
        "client_version": report.client_version,
        "applied_revision": report.applied_revision,
        "last_sequence": report.sequence,
        "report_interval_seconds": report.interval_seconds,
        "last_report_time": now,
        "stages": [_state_to_json(s.state) for s in report.stages],
    }


def _bucket_start(now: datetime, bucket: timedelta) -> datetime:
    seconds = int(bucket.total_seconds())
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=now.tzinfo)


def _aware(value: datetime) -> datetime:
    aware = utc(value)
    assert aware is not None
    return aware


def _state_to_json(state: StageState) -> dict[str, Any]:
    data = asdict(state)
    data["stage_type"] = state.stage_type.value
    data["routes"] = [route_to_json(r) for r in state.routes]
    return data


def _with_route_totals(
    stages: list[dict[str, Any]], previous: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The new stages JSON with each route's counts added to the stored ones."""
    before = {s["stage_type"]: s.get("routes") or [] for s in previous}
    for stage in stages:
        old = [route_from_json(r) for r in before.get(stage["stage_type"], [])]
        new = [route_from_json(r) for r in stage["routes"]]
        stage["routes"] = [route_to_json(r) for r in accumulate(old, new)]
    return stages


def _client_from_row(row: Any) -> ClientState:
    return ClientState(
        client_id=row["client_id"],
        host=row["host"],
        pid=row["pid"],
        client_version=row["client_version"],
        applied_revision=row["applied_revision"],
        last_report_time=_aware(row["last_report_time"]),
        report_interval_seconds=row["report_interval_seconds"],
        stages=tuple(
            StageState(
                stage_type=StageType(s["stage_type"]),
                revision=int(s["revision"]),
                nack_revision=int(s["nack_revision"]),
                nack_reason=str(s["nack_reason"]),
                routes=tuple(route_from_json(r) for r in s.get("routes") or ()),
            )
            for s in row["stages"]
        ),
    )


def _outcomes_from_row(row: Any) -> Outcomes:
    return Outcomes(
        revision=row["revision"],
        succeeded=row["succeeded"],
        failed=row["failed"],
        retried=row["retried"],
        failures_by_cause={str(k): int(v) for k, v in row["failures_by_cause"].items()},
        duration_buckets=tuple(int(v) for v in row["duration_buckets"]),
    )
