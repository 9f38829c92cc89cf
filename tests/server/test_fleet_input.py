"""ReportStatus and GetFleetStatus refuse bad input precisely (INVALID_ARGUMENT with a
BadRequest naming the field) and store nothing, on the real server and SQLite file."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from tests.server.test_core_rpcs import bad_request_field
from tests.server.test_fleet import Stub, durations, report, stored_rows, voice_revision


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


async def test_a_report_naming_no_stage_is_stored(stub: Stub) -> None:
    # A client with nothing configured yet still says it is alive.
    answer = await stub.ReportStatus(
        pb.ReportStatusRequest(client_id="bare", sequence=1, host="h", pid=1)
    )
    assert not answer.duplicate
    status = await stub.GetFleetStatus(pb.GetFleetStatusRequest())
    assert [c.client_id for c in status.clients] == ["bare"]
    assert all(not s.revisions for s in status.stages)
