"""A half-open connection to one replica (its process frozen with SIGSTOP: the socket
stays open, nothing arrives) is found by the heartbeat deadline and the client moves to
the next replica instead of waiting for TCP to give up.

The single-server cases are tested in tests/client/test_client.py:
``test_stale_after_three_missed_heartbeats_and_ready_again`` (SIGSTOP → STALE, still
serving; SIGCONT → READY) and ``test_wait_ready_names_the_target_and_the_last_error``
(server down at start, no cache file → NotReadyError naming the target and the error).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from stageconfig import ConfigClient, StageType, TimingOptions
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.faults.conftest import voice_update, wait_until
from tests.support.postgres import temporary_database
from tests.support.servers import ServerProcess, server_env

HEARTBEAT_SECONDS = 0.3


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_database() as url:
        yield url


async def test_a_frozen_replica_is_left_for_the_next_within_the_heartbeat_deadline(
    pg_url: str, tmp_path: Path
) -> None:
    env = server_env(
        tmp_path / "unused.db",
        None,
        STAGECONFIG_DATABASE_URL=pg_url,
        STAGECONFIG_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
    )
    a, b = ServerProcess(env), ServerProcess(env)
    await asyncio.to_thread(a.start)
    await asyncio.to_thread(b.start)
    client = ConfigClient(
        [a.target, b.target],
        timing=TimingOptions(backoff_initial_seconds=0.1, backoff_max_seconds=0.5),
    )
    try:
        async with grpc.aio.insecure_channel(b.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            await stub.UpdateConfig(voice_update("alena"), timeout=10)
            client.start()
            await asyncio.to_thread(client.wait_ready, 10)
            await wait_until(
                lambda: client.heartbeat_seconds < 1, 5, "the heartbeat period learned"
            )
            assert client.target == a.target

            assert a.proc is not None
            a.proc.send_signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            await wait_until(lambda: client.target == b.target, 5, "the client leaves A")
            left_after = time.monotonic() - frozen_at
            answer = await stub.UpdateConfig(voice_update("zahar"), timeout=10)
            revision = answer.config.revision
            await wait_until(lambda: client.applied_revision >= revision, 5, "B's change")
            assert client.get(StageType.VOICE).model == "zahar"
    finally:
        if a.proc is not None:
            a.proc.send_signal(signal.SIGCONT)
        client.close()
        await asyncio.to_thread(a.stop)
        await asyncio.to_thread(b.stop)
    print(f"\nfrozen replica left after {left_after:.2f} s (heartbeat {HEARTBEAT_SECONDS} s)")
    # Three missed heartbeats, give or take the watchdog's tick.
    assert 2 * HEARTBEAT_SECONDS < left_after < 3 * HEARTBEAT_SECONDS + 1.5
