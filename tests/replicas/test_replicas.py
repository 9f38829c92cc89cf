"""Several real server processes sharing one PostgreSQL database."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.fakes.provider_server import FakeProviders
from tests.support.servers import ServerProcess, start_app

VOICES = ["alena", "jane", "filipp", "ermil", "omazh", "zahar"]


def voice_update(model: str) -> pb.UpdateConfigRequest:
    return pb.UpdateConfigRequest(
        stage_type=pb.STAGE_TYPE_VOICE,
        provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
        api_key="AQVN-replica-test-key",
        model=model,
    )


@dataclass
class WatchLog:
    """What one watcher saw: every revision applied, arrival times, its last state."""

    revisions: list[int] = field(default_factory=list)
    arrivals: dict[int, float] = field(default_factory=dict)
    state: dict[int, tuple[int, str]] = field(default_factory=dict)  # stage → (rev, model)
    violations: list[str] = field(default_factory=list)
    reconnects: int = 0
    last: int | None = None
    first_ready: asyncio.Event = field(default_factory=asyncio.Event)


async def watch_with_failover(targets: list[str], log: WatchLog, stop: asyncio.Event) -> None:
    """A worker's watch loop: resume from its revision on the next target when one dies."""
    index = 0
    while not stop.is_set():
        target = targets[index % len(targets)]
        request = pb.WatchConfigRequest(client_id=f"test-watcher-{id(log)}")
        if log.last is not None:
            request.resume_revision = log.last
        try:
            async with grpc.aio.insecure_channel(target) as channel:
                call = pbg.StageConfigServiceStub(channel).WatchConfig(request)
                stop_task = asyncio.ensure_future(stop.wait())
                try:
                    async for message in call:
                        _apply(message, log)
                        if stop.is_set():
                            break
                finally:
                    stop_task.cancel()
                    call.cancel()
        except grpc.aio.AioRpcError:
            pass
        if stop.is_set():
            return
        log.reconnects += 1
        index += 1
        await asyncio.sleep(0.05)


def _apply(message: pb.WatchConfigResponse, log: WatchLog) -> None:
    kind = message.WhichOneof("event")
    now = time.monotonic()
    if kind == "snapshot":
        revision = message.snapshot.revision
        if log.last is not None and revision < log.last:
            log.violations.append(f"snapshot went back from {log.last} to {revision}")
        log.state = {c.stage_type: (c.revision, c.model) for c in message.snapshot.configs}
        log.last = revision
        log.first_ready.set()
    elif kind == "change":
        revision = message.change.revision
        if log.last is not None and revision <= log.last:
            log.violations.append(f"change {revision} after {log.last}")
        log.revisions.append(revision)
        log.arrivals[revision] = now
        config = message.change.config
        log.state[config.stage_type] = (config.revision, config.model)
        log.last = revision
    elif kind == "heartbeat":
        log.first_ready.set()


async def wait_until(predicate: Callable[[], bool], deadline_seconds: float, what: str) -> None:
    deadline = time.monotonic() + deadline_seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_update_on_one_replica_reaches_watchers_on_the_others(
    replicas: list[ServerProcess],
) -> None:
    a, b, c = replicas
    stop = asyncio.Event()
    logs = [WatchLog(), WatchLog()]
    tasks = [
        asyncio.create_task(watch_with_failover([b.target], logs[0], stop)),
        asyncio.create_task(watch_with_failover([c.target], logs[1], stop)),
    ]
    try:
        for log in logs:
            await asyncio.wait_for(log.first_ready.wait(), 10)
        delays: list[float] = []
        async with grpc.aio.insecure_channel(a.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            for i in range(20):
                answer = await stub.UpdateConfig(voice_update(VOICES[i % len(VOICES)]))
                acked = time.monotonic()
                revision = answer.config.revision
                await wait_until(
                    lambda r=revision: all(r in log.arrivals for log in logs),
                    5,
                    f"revision {revision} on B and C",
                )
                delays.append(max(log.arrivals[revision] for log in logs) - acked)
        # Arrival can precede the ack's return to the updater: clamp at zero.
        delays = [max(d, 0.0) for d in delays]
        median, worst = statistics.median(delays), max(delays)
        print(
            f"\ncross-replica propagation: median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms"
        )
        assert worst < 1.0
        for log in logs:
            assert log.violations == []
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_replica_killed_during_updates_loses_nothing(
    replicas: list[ServerProcess],
) -> None:
    a, b, c = replicas
    stop = asyncio.Event()
    logs = [WatchLog() for _ in range(3)]
    # Every watcher starts on A and fails over to B or C.
    tasks = [
        asyncio.create_task(watch_with_failover([a.target, *order], log, stop))
        for log, order in zip(
            logs, ([b.target, c.target], [c.target, b.target], [b.target]), strict=True
        )
    ]
    acknowledged: list[int] = []
    try:
        for log in logs:
            await asyncio.wait_for(log.first_ready.wait(), 10)
        targets = [a.target, b.target]
        current = 0
        for i in range(40):
            if i == 15:
                a.kill()  # SIGKILL in the middle of the stream of updates
            async with grpc.aio.insecure_channel(targets[current]) as channel:
                try:
                    answer = await pbg.StageConfigServiceStub(channel).UpdateConfig(
                        voice_update(VOICES[i % len(VOICES)]), timeout=5
                    )
                except grpc.aio.AioRpcError:
                    current = 1  # A is gone: the updater moves on, like the watchers
                    continue
            acknowledged.append(answer.config.revision)
        async with grpc.aio.insecure_channel(b.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            history = await stub.GetConfigHistory(pb.GetConfigHistoryRequest(page_size=100))
            final = await stub.ListConfigs(pb.ListConfigsRequest())
        in_history = {e.revision for e in history.entries}
        assert set(acknowledged) <= in_history, "an acknowledged update is missing"
        head = final.head_revision
        voice = next(s for s in final.stages if s.stage_type == pb.STAGE_TYPE_VOICE).config
        for log in logs:
            await wait_until(lambda log=log: log.last == head, 10, "watchers to converge")
            assert log.violations == []
            assert log.state[pb.STAGE_TYPE_VOICE] == (voice.revision, voice.model)
            assert log.revisions == sorted(set(log.revisions))
        assert all(log.reconnects >= 1 for log in logs)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_two_replicas_starting_the_sync_together_make_one_run(
    pg_url: str, tmp_path: Path, fake_providers: FakeProviders
) -> None:
    now = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    apps = [
        await start_app(
            tmp_path / "unused.db",
            fake_providers,
            clock=lambda: now,
            STAGECONFIG_DATABASE_URL=pg_url,
        )
        for _ in range(2)
    ]
    try:
        async with grpc.aio.insecure_channel(apps[0].target) as channel:
            await pbg.StageConfigServiceStub(channel).UpdateConfig(voice_update("alena"))
        outcomes = await asyncio.gather(*(app.sync.run_once() for app in apps))
        assert sorted(o is None for o in outcomes) == [False, True]
    finally:
        for app in apps:
            await app.stop(grace=1)
