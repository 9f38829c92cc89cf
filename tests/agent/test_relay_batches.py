"""The relay's batching: every process's oldest queued report goes out in as few
ReportStatus calls as the server's bounds allow (1,024 reports, 1 MiB per call)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import grpc
import httpx

from stageconfig.agent._relay import (
    _MAX_BATCH,
    _MAX_BATCH_BYTES,
    Relay,
    _batches,
    _Process,
    _request,
)
from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.fakes.provider_server import FakeProviders
from tests.integration.support import free_port
from tests.server.test_metrics import sample
from tests.support.servers import ServerProcess, server_env


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


PROCESSES = 8


def test_a_burst_of_process_reports_reaches_the_server_in_one_call(tmp_path: Path) -> None:
    # A real relay thread and socket against a real server process: the processes'
    # datagrams of one burst become one ReportStatus; each process is a client.
    fake = FakeProviders().start()
    metrics_port = free_port()
    server = ServerProcess(
        server_env(
            tmp_path / "stageconfig.db",
            fake,
            STAGECONFIG_ADDRESS=f"127.0.0.1:{free_port()}",
            STAGECONFIG_METRICS_ADDRESS=f"127.0.0.1:{metrics_port}",
        )
    ).start()
    channel = grpc.insecure_channel(server.target)
    relay = Relay(tmp_path / "relay.sock", lambda: channel)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    try:
        # Queued in the socket before the relay runs: one burst, whatever the load (fewer
        # than net.unix.max_dgram_qlen, 10 by default, or the sender would block).
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            for i in range(PROCESSES):
                message = {"client_id": f"host/{i}", "pid": os.getpid(), "stages": ["VOICE"]}
                sender.sendto(json.dumps(message).encode(), str(relay.path))
        thread.start()
        stub = pbg.StageConfigServiceStub(channel)
        deadline = time.monotonic() + 30
        while len(stub.GetFleetStatus(pb.GetFleetStatusRequest()).clients) < PROCESSES:
            assert time.monotonic() < deadline, "the reports did not arrive"
            time.sleep(0.05)
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        forwarded = relay.forwarded
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(10)
        relay.close()
        channel.close()
        server.stop()
        fake.stop()
    assert forwarded == PROCESSES
    calls = sample(text, "stageconfig_rpc_duration_seconds_count", method="ReportStatus", code="OK")
    assert calls == 1
