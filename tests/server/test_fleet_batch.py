"""A host agent's batch (``ReportStatusRequest.processes``) against the real server and
SQLite file: every entry counts as a client of its own, a retried batch is not counted
twice, one bad entry refuses the whole batch naming ``processes[i].…`` with nothing
stored, and the metrics count each entry as a report."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.fakes.provider_server import FakeProviders
from tests.server.test_core_rpcs import bad_request_field
from tests.server.test_fleet import Stub, report, revision_of, stored_rows, voice_revision
from tests.server.test_metrics import sample
from tests.support.servers import start_app


def batch(revision: int, sequence: int, count: int, **outcomes: int) -> pb.ReportStatusRequest:
    """A carrier (no client_id of its own) with ``count`` processes' reports."""
    processes = []
    for i in range(count):
        entry = report(f"proc-{i}", sequence, revision, **outcomes)
        entry.pid = 1000 + i
        processes.append(entry)
    return pb.ReportStatusRequest(processes=processes)


async def refused_field(stub: Stub, request: pb.ReportStatusRequest) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ReportStatus(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return bad_request_field(caught.value)


async def test_each_process_of_a_batch_counts_as_a_client(stub: Stub) -> None:
    revision = await voice_revision(stub)
    answer = await stub.ReportStatus(batch(revision, 1, 5, succeeded=2, failed=1))
    assert not answer.duplicate
    assert list(answer.process_duplicates) == [False] * 5

    status = await stub.GetFleetStatus(pb.GetFleetStatusRequest())
    assert sorted(c.client_id for c in status.clients) == [f"proc-{i}" for i in range(5)]
    seen = revision_of(status, revision)
    assert (seen.clients, seen.succeeded, seen.failed) == (5, 10, 5)


async def test_a_retried_batch_is_not_counted_twice(stub: Stub) -> None:
    revision = await voice_revision(stub)
    first = batch(revision, 7, 3, succeeded=1)
    await stub.ReportStatus(first)
    assert list((await stub.ReportStatus(first)).process_duplicates) == [True] * 3
    # A batch mixing a retry with new reports counts only the new ones.
    mixed = batch(revision, 8, 3, succeeded=10)
    mixed.processes[1].CopyFrom(first.processes[1])
    assert list((await stub.ReportStatus(mixed)).process_duplicates) == [False, True, False]
    seen = revision_of(await stub.GetFleetStatus(pb.GetFleetStatusRequest()), revision)
    assert (seen.clients, seen.succeeded) == (3, 3 + 20)


async def test_an_agent_reports_itself_and_its_processes_at_once(stub: Stub) -> None:
    revision = await voice_revision(stub)
    request = report("agent", 1, revision)
    request.processes.extend(batch(revision, 1, 2).processes)
    answer = await stub.ReportStatus(request)
    assert (answer.duplicate, list(answer.process_duplicates)) == (False, [False, False])
    assert (await stub.ReportStatus(request)).duplicate
    status = await stub.GetFleetStatus(pb.GetFleetStatusRequest())
    assert sorted(c.client_id for c in status.clients) == ["agent", "proc-0", "proc-1"]


async def test_list_watchers_shows_a_batched_process_report(stub: Stub) -> None:
    old = await voice_revision(stub)
    await voice_revision(stub, "zahar:neutral")
    call = stub.WatchConfig(
        pb.WatchConfigRequest(stage_types=[pb.STAGE_TYPE_VOICE], client_id="proc-1")
    )
    await call.read()  # the snapshot: the watcher is registered
    try:
        await stub.ReportStatus(batch(old, 1, 3, succeeded=4))
        (info,) = (await stub.ListWatchers(pb.ListWatchersRequest())).watchers
        assert (info.client_id, info.applied_revision) == ("proc-1", old)
        (stage,) = info.stages
        assert [(o.revision, o.succeeded) for o in stage.outcomes] == [(old, 4)]
    finally:
        call.cancel()


async def test_one_bad_entry_refuses_the_whole_batch(stub: Stub, db_path: Path) -> None:
    revision = await voice_revision(stub)
    bad = batch(revision, 1, 5, succeeded=1)
    bad.processes[3].stages[0].outcomes[0].failed = -1
    assert await refused_field(stub, bad) == "processes[3].stages[0].outcomes[0].failed"
    assert stored_rows(db_path) == (0, 0)

    unknown = batch(revision, 1, 2)
    unknown.processes[1].stages[0].stage_type = 99  # type: ignore[assignment]
    assert await refused_field(stub, unknown) == "processes[1].stages[0].stage_type"
    above = batch(revision, 1, 2)
    above.processes[0].applied_revision = revision + 5
    assert await refused_field(stub, above) == "processes[0].applied_revision"
    assert stored_rows(db_path) == (0, 0)


async def test_nested_processes_and_oversized_batches_are_refused(
    stub: Stub, db_path: Path
) -> None:
    revision = await voice_revision(stub)
    nested = batch(revision, 1, 2)
    nested.processes[1].processes.append(report("deeper", 1, revision))
    assert await refused_field(stub, nested) == "processes[1].processes"
    too_many = pb.ReportStatusRequest(
        processes=[pb.ReportStatusRequest(client_id=f"p{i}", sequence=1) for i in range(1025)]
    )
    assert await refused_field(stub, too_many) == "processes"
    # A carrier saying something of its own needs a client_id to say it under.
    carrier = batch(revision, 1, 1)
    carrier.sequence = 3
    assert await refused_field(stub, carrier) == "client_id"
    assert stored_rows(db_path) == (0, 0)
    # 1024 is allowed.
    full = pb.ReportStatusRequest(
        processes=[
            pb.ReportStatusRequest(client_id=f"p{i}", sequence=1, host="h", pid=i)
            for i in range(1024)
        ]
    )
    assert not any((await stub.ReportStatus(full)).process_duplicates)
    assert stored_rows(db_path) == (1024, 0)


async def test_metrics_count_each_batched_report(
    db_path: Path, fake_providers: FakeProviders
) -> None:
    app = await start_app(db_path, fake_providers, STAGECONFIG_METRICS_ADDRESS="127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            revision = await voice_revision(stub)
            await stub.ReportStatus(batch(revision, 1, 4, succeeded=3))
            await stub.ReportStatus(batch(revision, 1, 2))  # retries of two of them
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://127.0.0.1:{app.metrics.port}/metrics")).text
    finally:
        await app.stop(grace=1)
    assert sample(text, "stageconfig_fleet_reports_total", result="counted") == 4
    assert sample(text, "stageconfig_fleet_reports_total", result="duplicate") == 2
    outcomes = "stageconfig_fleet_task_outcomes_total"
    assert sample(text, outcomes, stage="VOICE", revision=str(revision), result="succeeded") == 12
