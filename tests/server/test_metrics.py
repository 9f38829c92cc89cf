"""The Prometheus endpoint: what an operator scrapes, and that no key is in it."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import httpx

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.fakes.provider_server import FakeProviders
from tests.support.servers import start_app

KEY = "sk-metrics-visible-key-9999"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    match = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    assert match, f"{name} {labels} not in metrics"
    return float(match.group(1))


async def fleet_metrics(
    db_path: Path,
    fake: FakeProviders,
    act: Callable[[pbg.StageConfigServiceStub], Awaitable[None]],
) -> str:
    """The /metrics text of a server with metrics on, after ``act(stub)`` and a
    GetFleetStatus (which refreshes the fleet gauges)."""
    app = await start_app(db_path, fake, STAGECONFIG_METRICS_ADDRESS="127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            await act(stub)
            await stub.GetFleetStatus(pb.GetFleetStatusRequest())
            async with httpx.AsyncClient() as http:
                return (await http.get(f"http://127.0.0.1:{app.metrics.port}/metrics")).text
    finally:
        await app.stop(grace=1)


async def test_metrics_endpoint_reports_watchers_revisions_latency_and_sync(
    db_path: Path, fake_providers: FakeProviders
) -> None:
    app = await start_app(db_path, fake_providers, STAGECONFIG_METRICS_ADDRESS="127.0.0.1:0")
    try:
        assert app.metrics.port is not None
        url = f"http://127.0.0.1:{app.metrics.port}/metrics"
        async with grpc.aio.insecure_channel(app.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            stream = stub.WatchConfig(pb.WatchConfigRequest(client_id="metrics-test"))
            await stream.read()  # the snapshot: the watcher is registered
            await stub.UpdateConfig(
                pb.UpdateConfigRequest(
                    stage_type=pb.STAGE_TYPE_POEM,
                    provider_kind=pb.PROVIDER_KIND_OPENAI,
                    api_key=KEY,
                )
            )
            change = await asyncio.wait_for(stream.read(), 5)
            assert change.change.revision == 1
            await stub.RefreshModels(pb.RefreshModelsRequest())
            with contextlib.suppress(grpc.aio.AioRpcError):  # NOT_FOUND, counted below
                await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=3))
            async with httpx.AsyncClient() as http:
                text = (await http.get(url)).text
            stream.cancel()
        assert sample(text, "stageconfig_watchers_connected") == 1
        assert sample(text, "stageconfig_revision_head") == 1
        assert sample(text, "stageconfig_watchers_behind_head") == 0
        assert sample(text, "stageconfig_propagation_seconds_count") >= 1
        assert (
            sample(text, "stageconfig_rpc_duration_seconds_count", method="UpdateConfig", code="OK")
            == 1
        )
        assert (
            sample(
                text,
                "stageconfig_rpc_duration_seconds_count",
                method="GetActiveConfig",
                code="NOT_FOUND",
            )
            == 1
        )
        assert (
            sample(text, "stageconfig_sync_results_total", provider="OPENAI", status="ACTIVE") == 1
        )
        assert sample(text, "stageconfig_models_cache_age_seconds", stage="POEM") >= 0
        assert KEY not in text
        assert KEY[-8:] not in text
    finally:
        await app.stop(grace=1)
