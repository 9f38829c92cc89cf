"""Fleet truth across replicas: reports live in the shared PostgreSQL database, so a
report sent to one replica shows on another, and the same report retried on another
replica (or on two at once) is counted once."""

from __future__ import annotations

import asyncio

import grpc

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.support.servers import ServerProcess

VOICE = pb.STAGE_TYPE_VOICE


def voice_report(
    sequence: int, revision: int, succeeded: int, client_id: str = "replica-worker"
) -> pb.ReportStatusRequest:
    return pb.ReportStatusRequest(
        client_id=client_id,
        sequence=sequence,
        applied_revision=revision,
        host="worker-host",
        pid=99,
        stages=[
            pb.StageReport(
                stage_type=VOICE,
                revision=revision,
                outcomes=[pb.TaskOutcomes(revision=revision, succeeded=succeeded, failed=1)],
            )
        ],
    )


def voice_revision(status: pb.GetFleetStatusResponse, revision: int) -> pb.RevisionFleetStatus:
    (stage,) = status.stages
    return next(r for r in stage.revisions if r.revision == revision)


async def test_a_report_to_one_replica_shows_on_another_and_counts_once(
    replicas: list[ServerProcess],
) -> None:
    a, b, c = replicas
    async with (
        grpc.aio.insecure_channel(a.target) as to_a,
        grpc.aio.insecure_channel(b.target) as to_b,
        grpc.aio.insecure_channel(c.target) as to_c,
    ):
        stub_a, stub_b, stub_c = (pbg.StageConfigServiceStub(ch) for ch in (to_a, to_b, to_c))
        written = await stub_a.UpdateConfig(
            pb.UpdateConfigRequest(
                stage_type=VOICE,
                provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
                api_key="AQVN-replica-test-key",
                model="jane",
            )
        )
        revision = written.config.revision
        # At once, on B: B may not have applied A's revision yet; it catches up rather
        # than refuse a revision its database already holds.
        first = await stub_b.ReportStatus(voice_report(1, revision, succeeded=5))
        assert not first.duplicate

        request = pb.GetFleetStatusRequest(stage_type=VOICE)
        seen = voice_revision(await stub_c.GetFleetStatus(request), revision)
        assert (seen.clients, seen.succeeded, seen.failed) == (1, 5, 1)

        # The client's retry lands on another replica: acknowledged, not counted.
        retry = await stub_a.ReportStatus(voice_report(1, revision, succeeded=5))
        assert retry.duplicate

        # The next report, retried on two replicas at the same moment: counted once.
        answers = await asyncio.gather(
            stub_a.ReportStatus(voice_report(2, revision, succeeded=7)),
            stub_b.ReportStatus(voice_report(2, revision, succeeded=7)),
            stub_c.ReportStatus(voice_report(2, revision, succeeded=7)),
        )
        assert sorted(a.duplicate for a in answers) == [False, True, True]

        # A new client's first report, on three replicas at once: they race to create
        # its row; one wins, the others see it and answer duplicate.
        answers = await asyncio.gather(
            *(
                stub.ReportStatus(voice_report(1, revision, succeeded=10, client_id="newcomer"))
                for stub in (stub_a, stub_b, stub_c)
            )
        )
        assert sorted(a.duplicate for a in answers) == [False, True, True]

        for stub in (stub_a, stub_b, stub_c):
            status = await stub.GetFleetStatus(request)
            seen = voice_revision(status, revision)
            assert (seen.clients, seen.succeeded, seen.failed) == (2, 22, 3)
            assert [c.client_id for c in status.clients] == ["newcomer", "replica-worker"]


async def test_an_agents_batch_retried_on_three_replicas_at_once_counts_once(
    replicas: list[ServerProcess],
) -> None:
    # PostgreSQL: the batch locks its clients' rows in client_id order, so batches over
    # the same clients (listed in different orders) wait for each other, never deadlock.
    a, b, c = replicas
    async with (
        grpc.aio.insecure_channel(a.target) as to_a,
        grpc.aio.insecure_channel(b.target) as to_b,
        grpc.aio.insecure_channel(c.target) as to_c,
    ):
        stubs = [pbg.StageConfigServiceStub(ch) for ch in (to_a, to_b, to_c)]
        written = await stubs[0].UpdateConfig(
            pb.UpdateConfigRequest(
                stage_type=VOICE,
                provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
                api_key="AQVN-replica-test-key",
                model="jane",
            )
        )
        revision = written.config.revision
        entries = [voice_report(1, revision, 2, client_id=f"proc-{i:03d}") for i in range(200)]
        for sequence in (1, 2):  # the first creates the rows, the second updates them
            for entry in entries:
                entry.sequence = sequence
            answers = await asyncio.gather(
                *(
                    stub.ReportStatus(pb.ReportStatusRequest(processes=entries[::step]))
                    for stub, step in zip(stubs, (1, -1, 1), strict=True)
                )
            )
            counted = sum(not d for answer in answers for d in answer.process_duplicates)
            assert counted == len(entries)
        status = await stubs[2].GetFleetStatus(pb.GetFleetStatusRequest(stage_type=VOICE))
        seen = voice_revision(status, revision)
        assert (seen.clients, seen.succeeded, seen.failed) == (200, 800, 400)
