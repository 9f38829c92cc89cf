"""Graceful shutdown (SIGTERM): health turns NOT_SERVING, watch streams end so clients
move to another replica at once, and unary calls in flight finish — even an UpdateConfig
waiting on a slow provider for longer than the old fixed 5 s grace."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stageconfig import ClientState, ConfigClient, StageType, StateChange
from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.domain import ProviderKind
from tests.fakes.provider_server import FakeProviders
from tests.faults.conftest import HEALTH_SERVICES, NOT_SERVING, SERVING, voice_update, wait_until
from tests.support.postgres import temporary_database
from tests.support.servers import ServerProcess, server_env

PROVIDER_TIMEOUT_SECONDS = 6.0
"""Longer than the 5 s the server used to allow in-flight calls at shutdown."""


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_database() as url:
        yield url


async def _health_log(target: str, service: str, seen: list[int]) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=service)
        )
        try:
            async for answer in call:
                seen.append(answer.status)
        except grpc.aio.AioRpcError:
            pass  # the server went away
        finally:
            call.cancel()


async def _listed_on(target: str, client_id: str) -> bool:
    async with grpc.aio.insecure_channel(target) as channel:
        listed = await pbg.StageConfigServiceStub(channel).ListWatchers(
            pb.ListWatchersRequest(), timeout=5
        )
    return any(w.client_id == client_id for w in listed.watchers)


async def test_sigterm_drains_one_replica_while_the_client_moves_to_the_next(
    pg_url: str, tmp_path: Path, fake_providers: FakeProviders
) -> None:
    env = server_env(
        tmp_path / "unused.db",
        fake_providers,
        STAGECONFIG_DATABASE_URL=pg_url,
        STAGECONFIG_PROVIDER_TIMEOUT_SECONDS=str(PROVIDER_TIMEOUT_SECONDS),
    )
    a, b = ServerProcess(env), ServerProcess(env)
    await asyncio.to_thread(a.start)
    await asyncio.to_thread(b.start)
    states: list[StateChange] = []
    # Default backoff: what a worker really gets after a stream ends.
    client = ConfigClient([a.target, b.target], client_id="graceful-client")
    client.on_state(states.append)
    try:
        async with grpc.aio.insecure_channel(a.target) as channel_a:
            stub_a = pbg.StageConfigServiceStub(channel_a)
            await stub_a.UpdateConfig(voice_update("alena"), timeout=10)
            song = pb.UpdateConfigRequest(
                stage_type=pb.STAGE_TYPE_SONG,
                provider_kind=pb.PROVIDER_KIND_SUNO,
                api_key="suno-graceful-test-key-01",
                model="V5",
            )
            await stub_a.UpdateConfig(song, timeout=10)
            client.start()
            await asyncio.to_thread(client.wait_ready, 10)
            assert client.target == a.target

            health: dict[str, list[int]] = {name: [] for name in HEALTH_SERVICES}
            watchers = [
                asyncio.create_task(_health_log(a.target, name, seen))
                for name, seen in health.items()
            ]
            await wait_until(
                lambda: all(seen == [SERVING] for seen in health.values()), 5, "health SERVING"
            )

            # An admin's update waits on a slow provider when the replica is told to stop.
            fake_providers.clear_requests()
            fake_providers.set_failure(ProviderKind.SUNO, "hang")
            song.model = "V4_5"
            in_flight = asyncio.ensure_future(stub_a.UpdateConfig(song, timeout=30))
            assert await asyncio.to_thread(fake_providers.wait_for_requests, 1, 10)

            assert a.proc is not None
            a.proc.send_signal(signal.SIGTERM)
            sigterm_at = time.monotonic()
            to_not_serving = await wait_until(
                lambda: all(seen[-1] == NOT_SERVING for seen in health.values()),
                2,
                "health NOT_SERVING after SIGTERM",
            )
            for task in watchers:
                task.cancel()  # a health watch would otherwise hold the drain open

            # The client's stream on A ended at once; it resumes on B.
            while not await _listed_on(b.target, "graceful-client"):
                assert time.monotonic() - sigterm_at < 5, "the client never reached B"
            moved = time.monotonic() - sigterm_at
            assert client.target == b.target
            assert client.state is ClientState.READY
            assert all(s.state is not ClientState.STALE for s in states)

            answer = await in_flight  # completes OK although A is shutting down
            finished = time.monotonic() - sigterm_at
            # The write A finished while draining reaches the client through B.
            revision = answer.config.revision
            await wait_until(lambda: client.applied_revision >= revision, 5, "the drained write")
            assert client.get(StageType.SONG).model == "V4_5"
            # A exits by itself once the drained call is done (no second signal).
            exit_code = await asyncio.to_thread(a.proc.wait, 20)
            exited = time.monotonic() - sigterm_at
    finally:
        fake_providers.set_failure(ProviderKind.SUNO, None)
        await asyncio.to_thread(a.stop)
        client.close()
        await asyncio.to_thread(b.stop)

    print(
        f"\nSIGTERM → health NOT_SERVING {to_not_serving * 1000:.0f} ms, client on the next "
        f"replica {moved * 1000:.0f} ms, in-flight UpdateConfig done after {finished:.1f} s, "
        f"process exited after {exited:.1f} s"
    )
    assert moved < 2.0
    assert answer.written
    assert answer.config.model == "V4_5"
    assert answer.config.status == pb.CONFIG_STATUS_ERROR  # the provider never answered
    assert finished > PROVIDER_TIMEOUT_SECONDS - 1
    assert exit_code == 0
    assert "Traceback" not in a.log, a.log


def test_a_stop_while_the_sync_is_in_a_database_call_still_exits(tmp_path: Path) -> None:
    # Stopping cancels the model sync; a sync cancelled inside a SQLite call closes its
    # connection over a few event-loop turns. The server used to dispose of the engine and
    # return at once, leaving that close to asyncio.run's teardown, which cancels it a
    # second time: aiosqlite then waits forever on its stopped worker thread, and the
    # process never exited after SIGTERM (about one start in five under scripts/serve).
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "tests.faults.stop_during_sync", str(tmp_path / "fresh.db")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stopped and exited" in done.stdout
