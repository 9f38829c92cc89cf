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
from tests.server.test_core_rpcs import VOICE_UPDATE, bad_request_field

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


@pytest.fixture
async def revision(stub: Stub) -> int:
    return await voice_revision(stub)


def _bad(revision: int, case: str) -> tuple[pb.ReportStatusRequest, str]:
    """A report with one mistake, and the field the answer must name."""
    good = report("worker-a", 5, revision, succeeded=1, buckets=durations(b1=1))
    bad = pb.ReportStatusRequest()
    bad.CopyFrom(good)
    stage = bad.stages[0]
    outcome = stage.outcomes[0]
    if case == "no client_id":
        bad.client_id = ""
        return bad, "client_id"
    if case == "long client_id":
        bad.client_id = "w" * 129
        return bad, "client_id"
    if case == "control in client_id":
        bad.client_id = "worker\x1b[31m"
        return bad, "client_id"
    if case == "long host":
        bad.host = "h" * 256
        return bad, "host"
    if case == "long version":
        bad.client_version = "v" * 65
        return bad, "client_version"
    if case == "negative pid":
        bad.pid = -1
        return bad, "pid"
    if case == "no sequence":
        bad.sequence = 0
        return bad, "sequence"
    if case == "applied above head":
        bad.applied_revision = revision + 100
        return bad, "applied_revision"
    if case == "negative applied":
        bad.applied_revision = -1
        return bad, "applied_revision"
    if case == "unspecified stage":
        stage.stage_type = pb.STAGE_TYPE_UNSPECIFIED
        return bad, "stages[0].stage_type"
    if case == "unknown stage":
        stage.stage_type = 99  # type: ignore[assignment]
        return bad, "stages[0].stage_type"
    if case == "stage twice":
        bad.stages.append(pb.StageReport(stage_type=pb.STAGE_TYPE_VOICE))
        return bad, "stages[1].stage_type"
    if case == "stage revision above head":
        stage.revision = revision + 1
        return bad, "stages[0].revision"
    if case == "nack above head":
        stage.nack_revision = revision + 1
        return bad, "stages[0].nack_revision"
    if case == "long nack reason":
        stage.nack_revision = revision
        stage.nack_reason = "x" * 513
        return bad, "stages[0].nack_reason"
    if case == "negative succeeded":
        outcome.succeeded = -1
        return bad, "stages[0].outcomes[0].succeeded"
    if case == "negative failed":
        outcome.failed = -3
        return bad, "stages[0].outcomes[0].failed"
    if case == "negative retried":
        outcome.retried = -3
        return bad, "stages[0].outcomes[0].retried"
    if case == "outcome revision above head":
        outcome.revision = revision + 1
        return bad, "stages[0].outcomes[0].revision"
    if case == "too many outcomes":
        stage.outcomes.extend(pb.TaskOutcomes(revision=0) for _ in range(16))
        return bad, "stages[0].outcomes"
    if case == "too many causes":
        outcome.failures_by_cause.update({f"Cause{i}": 1 for i in range(33)})
        return bad, "stages[0].outcomes[0].failures_by_cause"
    if case == "long cause":
        outcome.failures_by_cause["C" * 65] = 1
        return bad, "stages[0].outcomes[0].failures_by_cause"
    if case == "negative cause count":
        outcome.failures_by_cause["Timeout"] = -1
        return bad, "stages[0].outcomes[0].failures_by_cause"
    if case == "13 buckets":
        del outcome.duration_buckets[-1]
        return bad, "stages[0].outcomes[0].duration_buckets"
    if case == "negative bucket":
        outcome.duration_buckets[3] = -1
        return bad, "stages[0].outcomes[0].duration_buckets"
    if case == "interval too long":
        bad.report_interval_seconds = 3601
        return bad, "report_interval_seconds"
    if case == "negative interval":
        bad.report_interval_seconds = -1
        return bad, "report_interval_seconds"
    raise AssertionError(case)


BAD_CASES = [
    "no client_id",
    "long client_id",
    "control in client_id",
    "long host",
    "long version",
    "negative pid",
    "no sequence",
    "applied above head",
    "negative applied",
    "unspecified stage",
    "unknown stage",
    "stage twice",
    "stage revision above head",
    "nack above head",
    "long nack reason",
    "negative succeeded",
    "negative failed",
    "negative retried",
    "outcome revision above head",
    "too many outcomes",
    "too many causes",
    "long cause",
    "negative cause count",
    "13 buckets",
    "negative bucket",
    "interval too long",
    "negative interval",
]


@pytest.mark.parametrize("case", BAD_CASES)
async def test_a_bad_report_is_refused_and_nothing_is_stored(
    stub: Stub, revision: int, db_path: Path, case: str
) -> None:
    bad, field = _bad(revision, case)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ReportStatus(bad)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_field(caught.value) == field
    assert stored_rows(db_path) == (0, 0)
    # The same sequence, fixed, is then counted: the refusal consumed nothing.
    good, _ = _bad(revision, "no client_id")
    good.client_id = bad.client_id if field != "client_id" else "worker-a"
    assert not (await stub.ReportStatus(report(good.client_id, 5, revision))).duplicate


async def test_an_oversized_report_is_refused(stub: Stub, revision: int, db_path: Path) -> None:
    bad = report("worker-a", 1, revision)
    bad.stages[0].nack_revision = revision
    bad.stages[0].nack_reason = "x" * 300_000
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ReportStatus(bad)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert stored_rows(db_path) == (0, 0)


@pytest.mark.parametrize("window", [-1, 7 * 24 * 3600 + 1])
async def test_a_window_out_of_range_is_refused(stub: Stub, window: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetFleetStatus(pb.GetFleetStatusRequest(window_seconds=window))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_field(caught.value) == "window_seconds"


async def test_a_report_naming_no_stage_is_stored(stub: Stub, app: StageConfigApp) -> None:
    # A client with nothing configured yet still says it is alive.
    answer = await stub.ReportStatus(
        pb.ReportStatusRequest(client_id="bare", sequence=1, host="h", pid=1)
    )
    assert not answer.duplicate
    status = await stub.GetFleetStatus(pb.GetFleetStatusRequest())
    assert [c.client_id for c in status.clients] == ["bare"]
    assert all(not s.revisions for s in status.stages)
