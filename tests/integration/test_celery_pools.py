"""setup_stageconfig with the pools that do not fork (solo, threads): the client starts
in the worker process itself at start-up, before any task, and follows changes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.fakes.provider_server import FakeProviders
from tests.integration.support import REDIS_URL, CeleryWorker, TaskClient, unique_queue
from tests.support.servers import ServerProcess, server_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with FakeProviders() as fake:
        process = ServerProcess(
            server_env(tmp_path_factory.mktemp("pools") / "stageconfig.db", fake)
        ).start()
        try:
            yield process
        finally:
            process.stop()


def set_voice(target: str, model: str) -> int:
    with grpc.insecure_channel(target) as channel:
        response = pbg.StageConfigServiceStub(channel).UpdateConfig(
            pb.UpdateConfigRequest(
                stage_type=pb.STAGE_TYPE_VOICE,
                provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
                api_key="AQVN-voice-key-0001",
                model=model,
            ),
            timeout=10,
        )
    revision: int = response.config.revision
    return revision


def watcher_ids(target: str) -> list[str]:
    with grpc.insecure_channel(target) as channel:
        listed = pbg.StageConfigServiceStub(channel).ListWatchers(
            pb.ListWatchersRequest(), timeout=10
        )
    return [w.client_id for w in listed.watchers]


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_non_forking_pools_start_the_client_in_the_worker_process(
    server: ServerProcess, tmp_path: Path, pool: str
) -> None:
    set_voice(server.target, "alena")
    tasks = TaskClient(unique_queue(pool))
    worker = CeleryWorker(
        {
            "STAGECONFIG_TARGET": server.target,
            "CELERY_BROKER_URL": REDIS_URL,
            "CELERY_RESULT_BACKEND": REDIS_URL,
        },
        tasks.queue,
        pool=pool,
        concurrency=2,
    )
    try:
        worker.start()
        assert worker.proc is not None
        # Started at worker start-up in the worker process itself, before any task: the
        # server already lists its stream (client_id host/pid).
        deadline = time.monotonic() + 5
        while not any(c.endswith(f"/{worker.proc.pid}") for c in watcher_ids(server.target)):
            assert time.monotonic() < deadline, watcher_ids(server.target)
            time.sleep(0.02)
        report = tasks.run("example.voice_config")
        assert (report["pid"], report["state"], report["model"]) == (
            worker.proc.pid,
            "READY",
            "alena",
        )
        revision = set_voice(server.target, "zahar")
        deadline = time.monotonic() + 5
        while tasks.run("example.voice_config")["applied_revision"] != revision:
            assert time.monotonic() < deadline, "the change never reached the worker"
        assert tasks.run("example.voice_config")["model"] == "zahar"
    finally:
        worker.stop()
        tasks.close()
    assert "-> CLOSED" in worker.log  # closed on worker shutdown
