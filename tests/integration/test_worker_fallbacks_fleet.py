"""The fleet view of fallback routes, all real processes: the stageconfig server (a
subprocess, SQLite file) stores a POEM primary on Gemini with an OpenAI fallback — both
keys verified against FakeProviders — and ``celery worker --pool=prefork
--concurrency=2`` writes poems through ``ProviderFactory``. With Gemini out of quota,
every task succeeds through OpenAI, and GetFleetStatus shows the primary failing
(QUOTA) with its breaker open on every process that ran a poem, and the fallback
serving; the server's log and the worker's never hold a key.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.domain import ProviderKind
from tests.fakes.provider_server import FakeProviders
from tests.integration.support import (
    CeleryWorker,
    TaskClient,
    free_port,
    stack_env,
    unique_queue,
)
from tests.support.configs import poem_with_openai_fallback
from tests.support.servers import ServerProcess, server_env

pytestmark = pytest.mark.slow

GEMINI_KEY = "AIza-fleet-fallback-primary-51"
OPENAI_KEY = "sk-fleet-fallback-openai-52"


def fleet_routes(stub: pbg.StageConfigServiceStub) -> list[pb.RouteFleetStatus]:
    request = pb.GetFleetStatusRequest(stage_type=pb.STAGE_TYPE_POEM)
    (stage,) = stub.GetFleetStatus(request, timeout=10).stages
    return sorted(stage.routes, key=lambda r: r.route_index)


@pytest.fixture
def fleet(
    tmp_path: Path,
) -> Iterator[
    tuple[FakeProviders, pbg.StageConfigServiceStub, CeleryWorker, TaskClient, ServerProcess]
]:
    fake = FakeProviders().start()
    server = ServerProcess(
        server_env(
            tmp_path / "stageconfig.db", fake, STAGECONFIG_ADDRESS=f"127.0.0.1:{free_port()}"
        )
    ).start()
    channel = grpc.insecure_channel(server.target)
    stub = pbg.StageConfigServiceStub(channel)
    stub.UpdateConfig(poem_with_openai_fallback(GEMINI_KEY, OPENAI_KEY), timeout=10)
    env = stack_env(server.target, fake, STAGECONFIG_REPORT_INTERVAL_SECONDS="0.5")
    queue = unique_queue("fallback-fleet")
    worker = CeleryWorker(env, queue, concurrency=2)
    tasks = TaskClient(queue)
    try:
        worker.start()
        yield fake, stub, worker, tasks, server
    finally:
        worker.stop()
        tasks.close()
        channel.close()
        server.stop()
        fake.stop()


def test_the_fleet_view_shows_the_primary_failing_and_the_fallback_serving(
    fleet: tuple[
        FakeProviders, pbg.StageConfigServiceStub, CeleryWorker, TaskClient, ServerProcess
    ],
) -> None:
    fake, stub, worker, tasks, server = fleet
    fake.set_failure(ProviderKind.GEMINI, "quota")
    # threshold=1: the first failure opens a process's breaker.
    poems = tasks.run_batch("probe.poem", 16, timeout=30, threshold=1, cooldown=600)
    assert all(p["text"].startswith("A poem by gpt-4o-mini:") for p in poems)
    pids = {p["pid"] for p in poems}
    # Each process paid for one failure, then skipped the dead primary.
    assert fake.count(ProviderKind.GEMINI) == len(pids)

    deadline = time.monotonic() + 15
    while sum(r.succeeded for r in fleet_routes(stub)[1:]) < 16:
        assert time.monotonic() < deadline, f"the fleet view never counted: {fleet_routes(stub)}"
        time.sleep(0.1)
    primary, fallback = fleet_routes(stub)
    # "POEM: primary GEMINI failing (QUOTA) on 2/2 workers, serving from OPENAI"
    assert (primary.route_index, primary.provider_kind) == (0, pb.PROVIDER_KIND_GEMINI)
    assert primary.failure_cause == pb.STATUS_CAUSE_QUOTA
    assert (primary.clients, primary.clients_open) == (len(pids), len(pids))
    assert (primary.failed, primary.failovers) == (len(pids), 16)
    assert (fallback.route_index, fallback.provider_kind) == (1, pb.PROVIDER_KIND_OPENAI)
    assert (fallback.clients_open, fallback.failed) == (0, 0)
    for key in (GEMINI_KEY, OPENAI_KEY):
        assert key not in worker.log
        assert key not in "".join(server.output)
