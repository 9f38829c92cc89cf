"""A provider that accepts the connection and never answers: UpdateConfig and the model
sync time out with status ERROR, while reads and pushes to watchers go on as fast as
without it (measured both ways; only a generous bound is asserted — speed itself is the
benchmark's business)."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.domain import ProviderKind
from tests.fakes.provider_server import FakeProviders
from tests.faults.conftest import voice_update, wait_until
from tests.support.servers import ServerProcess, server_env

PROVIDER_TIMEOUT_SECONDS = 4.0
READS = 300
PROPAGATIONS = 15
P99_BOUND_SECONDS = 0.100


@dataclass
class Arrivals:
    """When the watcher received each revision."""

    at: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Latencies:
    """One measurement round."""

    read_p50: float
    read_p99: float
    propagation_p50: float
    propagation_max: float

    def __str__(self) -> str:
        return (
            f"GetActiveConfig p50 {self.read_p50 * 1000:.2f} ms, p99 {self.read_p99 * 1000:.2f} ms;"
            f" change → watcher p50 {self.propagation_p50 * 1000:.1f} ms,"
            f" max {self.propagation_max * 1000:.1f} ms"
        )


async def _watch(stub: pbg.StageConfigServiceStub, arrivals: Arrivals) -> None:
    call = stub.WatchConfig(pb.WatchConfigRequest(client_id="latency-watcher"))
    try:
        async for message in call:
            if message.WhichOneof("event") == "change":
                arrivals.at[message.change.revision] = time.monotonic()
    finally:
        call.cancel()


async def _measure(stub: pbg.StageConfigServiceStub, arrivals: Arrivals) -> Latencies:
    reads = []
    request = pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_VOICE)
    for _ in range(READS):
        started = time.monotonic()
        await stub.GetActiveConfig(request, timeout=5)
        reads.append(time.monotonic() - started)
    delays = []
    for n in range(PROPAGATIONS):
        started = time.monotonic()
        answer = await stub.UpdateConfig(voice_update(("jane", "zahar")[n % 2]), timeout=5)
        revision = answer.config.revision
        await wait_until(lambda r=revision: r in arrivals.at, 5, f"revision {revision} pushed")
        delays.append(arrivals.at[revision] - started)
    return Latencies(
        read_p50=statistics.median(reads),
        read_p99=statistics.quantiles(reads, n=100)[98],
        propagation_p50=statistics.median(delays),
        propagation_max=max(delays),
    )


async def test_a_hanging_provider_times_out_with_error_and_slows_nobody_else(
    tmp_path: Path, fake_providers: FakeProviders
) -> None:
    server = ServerProcess(
        server_env(
            tmp_path / "stageconfig.db",
            fake_providers,
            STAGECONFIG_PROVIDER_TIMEOUT_SECONDS=str(PROVIDER_TIMEOUT_SECONDS),
        )
    )
    await asyncio.to_thread(server.start)
    arrivals = Arrivals()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            await stub.UpdateConfig(voice_update("alena"), timeout=10)
            song = pb.UpdateConfigRequest(
                stage_type=pb.STAGE_TYPE_SONG,
                provider_kind=pb.PROVIDER_KIND_SUNO,
                api_key="suno-hanging-test-key-0001",
                model="V5",
            )
            stored = await stub.UpdateConfig(song, timeout=10)
            assert stored.config.status == pb.CONFIG_STATUS_ACTIVE
            watcher = asyncio.create_task(_watch(stub, arrivals))
            await _measure(stub, arrivals)  # warm-up: connections, caches
            calm = await _measure(stub, arrivals)

            fake_providers.clear_requests()
            fake_providers.set_failure(ProviderKind.SUNO, "hang")
            song.model = "V4_5"
            hung_started = time.monotonic()
            hanging: list[asyncio.Future[Any]] = [
                asyncio.ensure_future(stub.UpdateConfig(song, timeout=30)),
                asyncio.ensure_future(
                    stub.RefreshModels(
                        pb.RefreshModelsRequest(stage_type=pb.STAGE_TYPE_SONG), timeout=30
                    )
                ),
            ]
            # Both calls have reached the provider, which is now holding them.
            assert await asyncio.to_thread(fake_providers.wait_for_requests, 2, 10)
            troubled = await _measure(stub, arrivals)
            assert not any(task.done() for task in hanging), "measured after the hang ended"

            updated, refreshed = await asyncio.gather(*hanging)
            hung_for = time.monotonic() - hung_started
            watcher.cancel()
    finally:
        fake_providers.set_failure(ProviderKind.SUNO, None)
        await asyncio.to_thread(server.stop)

    print(f"\nwithout a hanging provider: {calm}\nwith two calls hanging:      {troubled}")
    # The hanging calls end at the provider timeout, with ERROR and a reason.
    assert PROVIDER_TIMEOUT_SECONDS - 0.5 < hung_for < PROVIDER_TIMEOUT_SECONDS + 3
    assert updated.written
    assert updated.config.model == "V4_5"
    assert updated.config.status == pb.CONFIG_STATUS_ERROR
    assert "could not be verified" in updated.config.status_reason
    (result,) = refreshed.results
    assert result.status == pb.CONFIG_STATUS_ERROR
    assert result.status_reason
    # Reads and pushes did not wait for the provider.
    assert troubled.read_p99 < P99_BOUND_SECONDS
    assert troubled.propagation_max < 1.0
