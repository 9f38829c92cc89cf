"""ConfigClient with several targets: a replica dies, the client resumes on another
without a state transition."""

from __future__ import annotations

import asyncio
import signal
import threading

import grpc

from stageconfig import (
    ClientState,
    ConfigChangeEvent,
    ConfigClient,
    StageType,
    StateChange,
    TimingOptions,
)
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.replicas.test_replicas import voice_update
from tests.support.servers import ServerProcess


def update(target: str, model: str) -> int:
    with grpc.insecure_channel(target) as channel:
        answer = pbg.StageConfigServiceStub(channel).UpdateConfig(voice_update(model), timeout=10)
    return answer.config.revision


def wait_for(condition: threading.Condition, predicate: object, timeout: float) -> bool:
    with condition:
        return condition.wait_for(predicate, timeout)  # type: ignore[arg-type]


async def _run_failover(replicas: list[ServerProcess], sig: int) -> None:
    a, b, c = replicas
    seen: list[int] = []
    changed = threading.Condition()

    def on_change(event: ConfigChangeEvent) -> None:
        with changed:
            seen.append(event.revision)
            changed.notify_all()

    first = await asyncio.to_thread(update, b.target, "alena")
    client = ConfigClient(
        [a.target, b.target, c.target],
        stages=[StageType.VOICE],
        timing=TimingOptions(
            backoff_initial_seconds=0.1, backoff_max_seconds=0.5, heartbeat_seconds=1
        ),
    )
    client.on_change(on_change)
    states: list[StateChange] = []
    client.on_state(states.append)
    try:
        client.start()
        await asyncio.to_thread(client.wait_ready, 10)
        assert client.target == a.target
        # A may still be applying B's write when the client arrives (its first
        # snapshot can predate it): wait for the revision, don't assume it.
        assert await asyncio.to_thread(
            wait_for, changed, lambda: client.applied_revision >= first, 10
        )
        assert client.get(StageType.VOICE).revision == first

        a.stop(sig)
        second = await asyncio.to_thread(update, c.target, "jane")
        third = await asyncio.to_thread(update, b.target, "filipp")
        assert await asyncio.to_thread(
            wait_for, changed, lambda: client.applied_revision >= third, 10
        ), f"client stuck at {client.applied_revision} on {client.target}"
        assert client.target in (b.target, c.target)
        config = client.get(StageType.VOICE)
        assert (config.revision, config.model) == (third, "filipp")
        # Every revision after the first arrived, in order, none skipped.
        assert [r for r in seen if r > first] == [second, third]
        # A failover within the stale grace is no outage: no transition at all.
        assert [(s.previous, s.state) for s in states] == [
            (ClientState.CONNECTING, ClientState.READY)
        ]
    finally:
        client.close()


async def test_client_fails_over_when_its_replica_is_killed(
    replicas: list[ServerProcess],
) -> None:
    await _run_failover(replicas, signal.SIGKILL)


async def test_client_moves_at_once_when_its_replica_shuts_down(
    replicas: list[ServerProcess],
) -> None:
    await _run_failover(replicas, signal.SIGTERM)
