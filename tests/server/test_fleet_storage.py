"""Fleet storage on a real SQLite file: outcome buckets merge within a minute, each
client's buckets are bounded, what is older than the largest window is pruned; and the
Prometheus endpoint shows the fleet without a client id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.db.engine import create_engine
from stageconfig_server.db.fleet import FleetReports
from stageconfig_server.db.migrate import upgrade_to_head
from stageconfig_server.domain import StageType
from stageconfig_server.fleet import OTHER_CAUSE, Outcomes, StageReport, StageState, StatusReport
from tests.fakes.provider_server import FakeProviders
from tests.server.test_fleet import report, voice_revision
from tests.server.test_metrics import fleet_metrics, sample

MINUTE = timedelta(minutes=1)
T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[FleetReports]:
    engine = create_engine(f"sqlite+aiosqlite:///{db_path}")
    await upgrade_to_head(engine)
    try:
        yield FleetReports(engine, max_rows_per_client=3)
    finally:
        await engine.dispose()


def voice(client_id: str, sequence: int, succeeded: int, cause: str = "") -> StatusReport:
    causes = {cause: 1} if cause else {}
    outcome = Outcomes(
        revision=0, succeeded=succeeded, failed=len(causes), failures_by_cause=causes
    )
    return StatusReport(
        client_id=client_id,
        sequence=sequence,
        stages=(StageReport(StageState(StageType.VOICE), (outcome,)),),
    )


async def test_reports_within_a_minute_share_a_bucket(store: FleetReports) -> None:
    assert await store.record(voice("a", 1, 2, "Timeout"), T0, MINUTE)
    assert await store.record(voice("a", 2, 3, "RateLimit"), T0 + timedelta(seconds=59), MINUTE)
    assert await store.record(voice("a", 3, 4), T0 + MINUTE, MINUTE)
    buckets = await store.outcomes_since(T0)
    by_start = {b.start: b.outcomes for b in buckets}
    assert set(by_start) == {T0, T0 + MINUTE}
    first = by_start[T0]
    assert (first.succeeded, first.failed) == (5, 2)
    assert dict(first.failures_by_cause) == {"Timeout": 1, "RateLimit": 1}
    assert await store.outcomes_since(T0 + MINUTE) == [b for b in buckets if b.start > T0]


async def test_a_bucket_keeps_at_most_32_causes_and_loses_no_failure(
    store: FleetReports,
) -> None:
    def many(sequence: int, prefix: str) -> StatusReport:
        causes = {f"{prefix}{i}": i + 1 for i in range(32)}
        outcome = Outcomes(revision=0, failed=sum(causes.values()), failures_by_cause=causes)
        stage = StageReport(StageState(StageType.VOICE), (outcome,))
        return StatusReport(client_id="noisy", sequence=sequence, stages=(stage,))

    await store.record(many(1, "A"), T0, MINUTE)
    await store.record(many(2, "B"), T0, MINUTE)
    (bucket,) = await store.outcomes_since(T0)
    causes = bucket.outcomes.failures_by_cause
    assert len(causes) == 32
    assert sum(causes.values()) == bucket.outcomes.failed == 2 * sum(range(1, 33))
    assert causes[OTHER_CAUSE] > 0
    assert causes["A31"] == causes["B31"] == 32  # the most frequent keep their names


async def test_each_clients_buckets_are_bounded_oldest_first(store: FleetReports) -> None:
    for minute in range(5):
        await store.record(voice("busy", minute + 1, 1), T0 + minute * MINUTE, MINUTE)
    await store.record(voice("calm", 1, 1), T0, MINUTE)
    starts = sorted(b.start for b in await store.outcomes_since(T0) if b.client_id == "busy")
    assert starts == [T0 + 2 * MINUTE, T0 + 3 * MINUTE, T0 + 4 * MINUTE]
    assert [b.client_id for b in await store.outcomes_since(T0, client_ids=["calm"])] == ["calm"]


async def test_prune_forgets_old_buckets_and_long_silent_clients(store: FleetReports) -> None:
    week = timedelta(days=7)
    await store.record(voice("gone", 1, 1), T0 - week - MINUTE, MINUTE)
    await store.record(voice("stays", 1, 1), T0 - week - MINUTE, MINUTE)
    await store.record(voice("stays", 2, 1), T0, MINUTE)
    assert await store.prune(T0 - week) == 3  # two old buckets and the silent client
    assert [c.client_id for c in await store.clients()] == ["stays"]
    assert [b.start for b in await store.outcomes_since(T0 - 2 * week)] == [T0]


async def test_metrics_show_the_fleet_without_client_ids(
    db_path: Path, fake_providers: FakeProviders
) -> None:
    revisions: list[int] = []

    async def nacks_and_outcomes(stub: pbg.StageConfigServiceStub) -> None:
        old = await voice_revision(stub)
        new = await voice_revision(stub, "zahar:neutral")
        revisions.extend((old, new))
        nacking = report(
            "metrics-worker-1",
            1,
            old,
            succeeded=4,
            failed=1,
            retried=2,
            nack_revision=new,
            nack_reason="refused",
        )
        await stub.ReportStatus(nacking)
        await stub.ReportStatus(nacking)  # a retry: counted as a duplicate only
        await stub.ReportStatus(report("metrics-worker-2", 1, new, succeeded=1))

    text = await fleet_metrics(db_path, fake_providers, nacks_and_outcomes)
    old, new = revisions
    assert sample(text, "stageconfig_fleet_clients", stage="VOICE", revision=str(old)) == 1
    assert sample(text, "stageconfig_fleet_clients", stage="VOICE", revision=str(new)) == 1
    assert sample(text, "stageconfig_fleet_nacks", stage="VOICE", revision=str(new)) == 1
    assert sample(text, "stageconfig_fleet_silent_clients", stage="VOICE") == 0
    outcomes = "stageconfig_fleet_task_outcomes_total"
    assert sample(text, outcomes, stage="VOICE", revision=str(old), result="succeeded") == 4
    assert sample(text, outcomes, stage="VOICE", revision=str(old), result="failed") == 1
    assert sample(text, outcomes, stage="VOICE", revision=str(old), result="retried") == 2
    assert sample(text, "stageconfig_fleet_reports_total", result="counted") == 2
    assert sample(text, "stageconfig_fleet_reports_total", result="duplicate") == 1
    assert "metrics-worker" not in text
