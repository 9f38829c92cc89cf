"""Fleet truth against the real in-process server and a real SQLite file: reports are
stored once per (client_id, sequence), GetFleetStatus aggregates them per stage and
revision, silence is shown, and ListWatchers carries what each watcher reported."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import StageConfigApp
from tests.server.test_core_rpcs import VOICE_UPDATE

Stub = pbg.StageConfigServiceStub
BUCKETS = 14


async def voice_revision(stub: Stub, model: str = "") -> int:
    """Store a VOICE config (SpeechKit: no network) and return its revision."""
    request = pb.UpdateConfigRequest()
    request.CopyFrom(VOICE_UPDATE)
    if model:
        request.model = model
    return (await stub.UpdateConfig(request)).config.revision


def durations(**at: int) -> list[int]:
    """14 duration buckets with counts at the given indexes (b0=..., b13=...)."""
    buckets = [0] * BUCKETS
    for name, count in at.items():
        buckets[int(name[1:])] = count
    return buckets


def report(
    client_id: str,
    sequence: int,
    revision: int,
    *,
    succeeded: int = 0,
    failed: int = 0,
    retried: int = 0,
    causes: dict[str, int] | None = None,
    buckets: list[int] | None = None,
    nack_revision: int = 0,
    nack_reason: str = "",
    interval: int = 30,
) -> pb.ReportStatusRequest:
    """A one-stage (VOICE) report."""
    outcomes = []
    if succeeded or failed or retried or buckets:
        outcomes.append(
            pb.TaskOutcomes(
                revision=revision,
                succeeded=succeeded,
                failed=failed,
                retried=retried,
                failures_by_cause=causes or {},
                duration_buckets=buckets or [],
            )
        )
    return pb.ReportStatusRequest(
        client_id=client_id,
        applied_revision=revision,
        host="worker-1",
        pid=4242,
        client_version="stageconfig-py 2.0.0",
        sequence=sequence,
        report_interval_seconds=interval,
        stages=[
            pb.StageReport(
                stage_type=pb.STAGE_TYPE_VOICE,
                revision=revision,
                nack_revision=nack_revision,
                nack_reason=nack_reason,
                outcomes=outcomes,
            )
        ],
    )


def voice_of(status: pb.GetFleetStatusResponse) -> pb.StageFleetStatus:
    return next(s for s in status.stages if s.stage_type == pb.STAGE_TYPE_VOICE)


def revision_of(status: pb.GetFleetStatusResponse, revision: int) -> pb.RevisionFleetStatus:
    return next(r for r in voice_of(status).revisions if r.revision == revision)


def stored_rows(db_path: Path) -> tuple[int, int]:
    """(client rows, outcome rows) in the database file."""
    with sqlite3.connect(db_path) as db:
        clients = db.execute("SELECT count(*) FROM fleet_clients").fetchone()[0]
        outcomes = db.execute("SELECT count(*) FROM fleet_outcomes").fetchone()[0]
    return int(clients), int(outcomes)


async def test_a_report_shows_in_the_fleet_view(stub: Stub) -> None:
    revision = await voice_revision(stub)
    answer = await stub.ReportStatus(
        report(
            "worker-a",
            1,
            revision,
            succeeded=8,
            failed=2,
            causes={"TimeoutError": 2},
            buckets=durations(b3=5, b6=5),
        )
    )
    assert not answer.duplicate

    status = await stub.GetFleetStatus(pb.GetFleetStatusRequest())
    assert status.window_seconds == 900
    assert status.head_revision == revision
    assert voice_of(status).revision == revision
    seen = revision_of(status, revision)
    assert (seen.clients, seen.succeeded, seen.failed) == (1, 8, 2)
    assert seen.failure_rate == pytest.approx(0.2)
    assert dict(seen.failures_by_cause) == {"TimeoutError": 2}
    assert seen.p50_duration_seconds == 0.5
    assert seen.p95_duration_seconds == 5.0
    (client,) = status.clients
    assert (client.client_id, client.host, client.pid) == ("worker-a", "worker-1", 4242)
    assert client.applied_revision == revision
    assert not client.silent
    assert client.last_report_time.seconds > 0


async def test_a_retried_report_is_not_counted_twice(stub: Stub) -> None:
    revision = await voice_revision(stub)
    first = report("worker-a", 7, revision, succeeded=3, failed=1)
    assert not (await stub.ReportStatus(first)).duplicate
    assert (await stub.ReportStatus(first)).duplicate
    # An older sequence arriving late is a duplicate too.
    assert (await stub.ReportStatus(report("worker-a", 6, revision, succeeded=50))).duplicate
    assert not (await stub.ReportStatus(report("worker-a", 8, revision, succeeded=1))).duplicate

    seen = revision_of(await stub.GetFleetStatus(pb.GetFleetStatusRequest()), revision)
    assert (seen.succeeded, seen.failed) == (4, 1)


async def test_a_restarted_client_starts_its_sequence_afresh(stub: Stub) -> None:
    revision = await voice_revision(stub)
    await stub.ReportStatus(report("worker-a", 40, revision, succeeded=1))
    restarted = report("worker-a", 1, revision, succeeded=2)
    restarted.pid = 5151  # another process under the same client_id
    assert not (await stub.ReportStatus(restarted)).duplicate
    assert (await stub.ReportStatus(restarted)).duplicate
    seen = revision_of(await stub.GetFleetStatus(pb.GetFleetStatusRequest()), revision)
    assert seen.succeeded == 3


async def test_a_key_quoted_in_a_refusal_never_reaches_an_admin(stub: Stub) -> None:
    revision = await voice_revision(stub)
    key = VOICE_UPDATE.api_key
    call = stub.WatchConfig(pb.WatchConfigRequest(client_id="quoting"))
    await call.read()
    try:
        await stub.ReportStatus(
            report(
                "quoting",
                1,
                revision,
                failed=1,
                causes={f"BadKey({key})": 1},
                nack_revision=revision,
                nack_reason=f"validator: key {key} looks wrong",
            )
        )
        status = await stub.GetFleetStatus(pb.GetFleetStatusRequest())
        watchers = await stub.ListWatchers(pb.ListWatchersRequest())
    finally:
        call.cancel()
    shown = str(status) + str(watchers)
    assert key not in shown
    assert list(revision_of(status, revision).nack_reasons) == [
        "validator: key <redacted> looks wrong"
    ]
    assert watchers.watchers[0].nack_reason == "validator: key <redacted> looks wrong"


async def test_outcomes_aggregate_across_clients(stub: Stub) -> None:
    old = await voice_revision(stub)
    new = await voice_revision(stub, "zahar:neutral")
    await stub.ReportStatus(
        report(
            "a",
            1,
            new,
            succeeded=6,
            failed=4,
            causes={"RateLimit": 3, "Timeout": 1},
            buckets=durations(b0=9, b12=1),
        )
    )
    await stub.ReportStatus(
        report(
            "b",
            1,
            new,
            succeeded=4,
            failed=6,
            causes={"RateLimit": 6},
            buckets=durations(b0=1, b12=9),
        )
    )
    await stub.ReportStatus(
        report("c", 1, old, succeeded=10, nack_revision=new, nack_reason="model refused: voice")
    )

    status = await stub.GetFleetStatus(pb.GetFleetStatusRequest(stage_type=pb.STAGE_TYPE_VOICE))
    assert [s.stage_type for s in status.stages] == [pb.STAGE_TYPE_VOICE]
    assert [r.revision for r in voice_of(status).revisions] == [new, old]
    on_new = revision_of(status, new)
    assert (on_new.clients, on_new.succeeded, on_new.failed) == (2, 10, 10)
    assert on_new.failure_rate == pytest.approx(0.5)
    assert dict(on_new.failures_by_cause) == {"RateLimit": 9, "Timeout": 1}
    # 20 durations: 10 in the first bucket (≤ 0.05 s), 10 in the 13th (≤ 500 s).
    assert on_new.p50_duration_seconds == 0.05
    assert on_new.p95_duration_seconds == 500.0
    assert (on_new.nacked, list(on_new.nack_reasons)) == (1, ["model refused: voice"])
    on_old = revision_of(status, old)
    assert (on_old.clients, on_old.succeeded, on_old.failure_rate) == (1, 10, 0.0)


async def test_a_client_that_stops_reporting_turns_silent(stub: Stub) -> None:
    revision = await voice_revision(stub)
    await stub.ReportStatus(report("quiet", 1, revision, succeeded=1, interval=1))
    await stub.ReportStatus(report("chatty", 1, revision, succeeded=1, interval=60))

    deadline = time.monotonic() + 10
    while True:
        status = await stub.GetFleetStatus(pb.GetFleetStatusRequest())
        if voice_of(status).silent_clients == 1:
            break
        assert time.monotonic() < deadline, "the quiet client never turned silent"
        await asyncio.sleep(0.2)
    silent = {c.client_id: c.silent for c in status.clients}
    assert silent == {"quiet": True, "chatty": False}
    # A silent client holds nothing as far as the fleet goes; its tasks still count.
    seen = revision_of(status, revision)
    assert (seen.clients, seen.succeeded) == (1, 2)


async def test_list_watchers_shows_what_the_watcher_reported(stub: Stub) -> None:
    old = await voice_revision(stub)
    new = await voice_revision(stub, "zahar:neutral")
    call = stub.WatchConfig(
        pb.WatchConfigRequest(stage_types=[pb.STAGE_TYPE_VOICE], client_id="watching")
    )
    await call.read()  # the snapshot: the watcher is registered
    try:
        await stub.ReportStatus(
            report(
                "watching",
                1,
                old,
                succeeded=2,
                failed=1,
                causes={"E": 1},
                nack_revision=new,
                nack_reason="validator: no neutral voices",
            )
        )
        answer = await stub.ListWatchers(pb.ListWatchersRequest())
        (info,) = answer.watchers
        assert info.client_id == "watching"
        assert info.applied_revision == old
        assert (info.nack_revision, info.nack_reason) == (new, "validator: no neutral voices")
        assert info.last_report_time.seconds > 0
        (stage,) = info.stages
        assert stage.stage_type == pb.STAGE_TYPE_VOICE
        assert stage.revision == old
        (outcomes,) = stage.outcomes
        assert (outcomes.revision, outcomes.succeeded, outcomes.failed) == (old, 2, 1)
    finally:
        call.cancel()


def _spoil(db_path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    db_path.write_bytes(b"not a database" * 512)


async def test_without_the_database_list_watchers_still_lists_and_reports_are_unavailable(
    stub: Stub, app: StageConfigApp, db_path: Path
) -> None:
    revision = await voice_revision(stub)
    call = stub.WatchConfig(pb.WatchConfigRequest(client_id="outage"))
    await call.read()
    try:
        await stub.ReportStatus(report("outage", 1, revision, succeeded=1))
        # Swap the database file for garbage under the server: every new connection fails.
        await app.engine.dispose()
        await asyncio.to_thread(_spoil, db_path)
        await app.engine.dispose()

        listed = await stub.ListWatchers(pb.ListWatchersRequest())
        assert [w.client_id for w in listed.watchers] == ["outage"]
        assert listed.watchers[0].applied_revision == 0  # no reports without the database
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ReportStatus(report("outage", 2, revision, succeeded=1))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetFleetStatus(pb.GetFleetStatusRequest())
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        call.cancel()
