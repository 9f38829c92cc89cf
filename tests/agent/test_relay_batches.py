"""The relay's batching: every process's oldest queued report goes out in as few
ReportStatus calls as the server's bounds allow (1,024 reports, 1 MiB per call)."""

from __future__ import annotations

from stageconfig.agent._relay import _MAX_BATCH, _MAX_BATCH_BYTES, _batches, _Process, _request
from stageconfig_contract.v1 import stage_config_pb2 as pb


def _processes(count: int, reason_bytes: int = 0) -> list[_Process]:
    processes = []
    for i in range(count):
        process = _Process(f"host/{i}", i + 1, {}, 30.0)
        stage = pb.StageReport(stage_type=pb.STAGE_TYPE_VOICE, nack_reason="x" * reason_bytes)
        for sequence in (1, 2):  # two queued: only the oldest goes in this turn
            process.queued.append(
                pb.ReportStatusRequest(
                    client_id=process.client_id, sequence=sequence, stages=[stage]
                )
            )
        processes.append(process)
    return processes


def test_reports_are_batched_up_to_the_servers_bound() -> None:
    chunks = _batches(_processes(2_500))
    assert [len(c) for c in chunks] == [_MAX_BATCH, _MAX_BATCH, 2_500 - 2 * _MAX_BATCH]
    assert all(request.sequence == 1 for chunk in chunks for _, request in chunk)
    carrier = _request(chunks[0], legacy=False)
    assert carrier.client_id == ""
    assert len(carrier.processes) == _MAX_BATCH


def test_large_reports_are_split_by_size() -> None:
    chunks = _batches(_processes(40, reason_bytes=100_000))
    assert len(chunks) > 1
    assert sum(len(c) for c in chunks) == 40
    assert all(_request(c, legacy=False).ByteSize() <= _MAX_BATCH_BYTES for c in chunks)


def test_an_old_server_gets_one_report_per_call() -> None:
    chunks = _batches(_processes(3), legacy=True)
    assert [len(c) for c in chunks] == [1, 1, 1]
    assert _request(chunks[1], legacy=True).client_id == "host/1"
