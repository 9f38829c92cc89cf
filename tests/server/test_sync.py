"""The model sync: the daily job, vanished models, failures that keep the last good cache."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from pytest_httpserver import HTTPServer

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import StageConfigApp
from stageconfig_server.domain import ConfigStatus, ProviderKind, StageType
from tests.fakes.provider_server import FakeProviders
from tests.support.servers import start_app


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def synced_app(
    db_path: Path, fake_providers: FakeProviders, clock: FakeClock, httpserver: HTTPServer
) -> AsyncIterator[StageConfigApp]:
    httpserver.expect_request("/hooks/stageconfig", method="POST").respond_with_data("ok")
    app = await start_app(
        db_path,
        fake_providers,
        clock=clock,
        STAGECONFIG_ADMIN_WEBHOOK_URL=httpserver.url_for("/hooks/stageconfig"),
    )
    try:
        yield app
    finally:
        await app.stop(grace=1)


async def configure_poem(stub: pbg.StageConfigServiceStub, model: str) -> int:
    answer = await stub.UpdateConfig(
        pb.UpdateConfigRequest(
            stage_type=pb.STAGE_TYPE_POEM,
            provider_kind=pb.PROVIDER_KIND_OPENAI,
            api_key="sk-sync-test-key-5555",
            model=model,
        )
    )
    return answer.config.revision


async def test_vanished_model_is_replaced_with_warning_history_push_and_webhook(
    synced_app: StageConfigApp,
    fake_providers: FakeProviders,
    httpserver: HTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with grpc.aio.insecure_channel(synced_app.target) as channel:
        stub = pbg.StageConfigServiceStub(channel)
        revision = await configure_poem(stub, "o3-mini")
        stream = stub.WatchConfig(pb.WatchConfigRequest(stage_types=[pb.STAGE_TYPE_POEM]))
        first = await stream.read()
        assert first.snapshot.revision == revision

        # The OpenAI adapter lists newest first: gpt-5 is "the first available" here.
        fake_providers.set_models(ProviderKind.OPENAI, ["gpt-4o", "gpt-5"])
        with caplog.at_level(logging.WARNING, logger="stageconfig.admin_events"):
            outcomes = await synced_app.sync.run_once()
        assert outcomes is not None
        (outcome,) = outcomes
        assert (outcome.replaced_model, outcome.selected_model) == ("o3-mini", "gpt-5")
        assert outcome.models[0] == "gpt-5"

        active = await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=1))
        assert active.config.model == "gpt-5"
        assert active.config.status == pb.CONFIG_STATUS_WARNING
        assert active.config.status_cause == pb.STATUS_CAUSE_MODEL_REPLACED
        assert "o3-mini" in active.config.status_reason
        assert "gpt-5" in active.config.status_reason

        history = await stub.GetConfigHistory(pb.GetConfigHistoryRequest(stage_type=1))
        assert history.entries[0].reason == pb.CHANGE_REASON_MODEL_REPLACED
        assert history.entries[0].actor == "stageconfig-sync"
        changed = {c.field: (c.old_value, c.new_value) for c in history.entries[0].changes}
        assert changed["model"] == ("o3-mini", "gpt-5")

        pushed = await asyncio.wait_for(stream.read(), timeout=5)
        while pushed.WhichOneof("event") == "heartbeat":
            pushed = await asyncio.wait_for(stream.read(), timeout=5)
        assert pushed.change.config.model == "gpt-5"
        assert pushed.change.reason == pb.CHANGE_REASON_MODEL_REPLACED
        stream.cancel()

    (hook_request, _response), *_ = httpserver.log
    body = json.loads(hook_request.get_data())
    assert body["event"] == "model_replaced"
    assert (body["old_model"], body["new_model"], body["stage_type"]) == (
        "o3-mini",
        "gpt-5",
        "POEM",
    )
    assert "sk-sync-test-key-5555" not in hook_request.get_data(as_text=True)
    assert any(
        "model replaced on stage POEM" in r.getMessage() and r.levelno == logging.WARNING
        for r in caplog.records
    )


async def test_failed_webhook_does_not_affect_the_sync(
    db_path: Path, fake_providers: FakeProviders, clock: FakeClock
) -> None:
    # Nothing listens on this port: the POST fails, the replacement stands.
    app = await start_app(
        db_path, fake_providers, clock=clock, STAGECONFIG_ADMIN_WEBHOOK_URL="http://127.0.0.1:9/x"
    )
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            await configure_poem(pbg.StageConfigServiceStub(channel), "o3-mini")
        fake_providers.set_models(ProviderKind.OPENAI, ["gpt-5"])
        outcomes = await app.sync.run_once()
        assert outcomes is not None
        assert outcomes[0].status is ConfigStatus.WARNING
    finally:
        await app.stop(grace=1)


async def test_outage_keeps_the_cache_and_success_returns_to_active(
    synced_app: StageConfigApp, fake_providers: FakeProviders, clock: FakeClock
) -> None:
    async with grpc.aio.insecure_channel(synced_app.target) as channel:
        stub = pbg.StageConfigServiceStub(channel)
        await configure_poem(stub, "gpt-4o")
        cached = await stub.ListModels(pb.ListModelsRequest(stage_type=1))

        fake_providers.set_failure(ProviderKind.OPENAI, "server_error")
        clock.advance(timedelta(days=1))
        await synced_app.sync.run_once()
        during = await stub.ListModels(pb.ListModelsRequest(stage_type=1))
        assert during.status == pb.CONFIG_STATUS_ERROR
        assert list(during.models) == list(cached.models)
        assert during.updated_at == cached.updated_at
        assert during.selected_model == "gpt-4o"

        fake_providers.set_failure(ProviderKind.OPENAI, "invalid_key")
        clock.advance(timedelta(days=1))
        await synced_app.sync.run_once()
        rejected = await stub.ListModels(pb.ListModelsRequest(stage_type=1))
        assert rejected.status == pb.CONFIG_STATUS_INVALID
        assert list(rejected.models) == list(cached.models)

        fake_providers.set_failure(ProviderKind.OPENAI, None)
        clock.advance(timedelta(days=1))
        await synced_app.sync.run_once()
        after = await stub.ListModels(pb.ListModelsRequest(stage_type=1))
        assert after.status == pb.CONFIG_STATUS_ACTIVE
        assert after.status_reason == ""
        assert after.updated_at.ToDatetime(tzinfo=UTC) == clock.now


async def test_unchanged_list_moves_cache_age_without_a_new_revision(
    synced_app: StageConfigApp, clock: FakeClock
) -> None:
    async with grpc.aio.insecure_channel(synced_app.target) as channel:
        stub = pbg.StageConfigServiceStub(channel)
        revision = await configure_poem(stub, "gpt-4o")
        clock.advance(timedelta(hours=25))
        await synced_app.sync.run_once()
        models = await stub.ListModels(pb.ListModelsRequest(stage_type=1))
        active = await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=1))
    assert models.updated_at.ToDatetime(tzinfo=UTC) == clock.now
    assert active.config.revision == revision


async def test_one_run_per_period(synced_app: StageConfigApp, clock: FakeClock) -> None:
    async with grpc.aio.insecure_channel(synced_app.target) as channel:
        await configure_poem(pbg.StageConfigServiceStub(channel), "gpt-4o")
    assert await synced_app.sync.due()
    assert await synced_app.sync.run_once() is not None
    assert await synced_app.sync.run_once() is None  # same period: already claimed
    assert not await synced_app.sync.due()
    clock.advance(timedelta(hours=24))
    assert await synced_app.sync.due()
    assert await synced_app.sync.run_once() is not None


async def test_hanging_provider_delays_nobody_else(
    db_path: Path, fake_providers: FakeProviders, clock: FakeClock
) -> None:
    app = await start_app(
        db_path, fake_providers, clock=clock, STAGECONFIG_PROVIDER_TIMEOUT_SECONDS="1"
    )
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            await configure_poem(stub, "gpt-4o")
            await stub.UpdateConfig(
                pb.UpdateConfigRequest(
                    stage_type=pb.STAGE_TYPE_SONG,
                    provider_kind=pb.PROVIDER_KIND_SUNO,
                    api_key="suno-hang-test-key-7777",
                )
            )
        fake_providers.set_failure(ProviderKind.SUNO, "hang")
        fake_providers.set_models(ProviderKind.OPENAI, ["gpt-4o", "gpt-5"])
        clock.advance(timedelta(days=1))
        outcomes = {o.stage_type: o for o in (await app.sync.run_once() or [])}
        assert outcomes[StageType.SONG].status is ConfigStatus.ERROR
        assert "could not be reached" in outcomes[StageType.SONG].status_reason
        assert set(outcomes[StageType.POEM].models) == {"gpt-4o", "gpt-5"}
    finally:
        fake_providers.set_failure(ProviderKind.SUNO, None)
        await app.stop(grace=1)


async def test_scheduler_runs_at_start_when_the_last_run_is_old(
    db_path: Path, fake_providers: FakeProviders
) -> None:
    first = await start_app(db_path, fake_providers)
    async with grpc.aio.insecure_channel(first.target) as channel:
        await configure_poem(pbg.StageConfigServiceStub(channel), "gpt-4o")
    await first.stop(grace=1)

    def job_runs() -> list[tuple[str, str]]:
        with sqlite3.connect(db_path) as conn:
            return conn.execute("SELECT job, outcome FROM job_runs").fetchall()

    assert job_runs() == []
    second = await start_app(db_path, fake_providers, run_sync=True)
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while not any(outcome for _job, outcome in job_runs()):
            assert asyncio.get_running_loop().time() < deadline, "the sync did not run at start"
            await asyncio.sleep(0.05)
        assert job_runs() == [("model_sync", "POEM=ACTIVE")]
    finally:
        await second.stop(grace=1)
    # Restarted right after a run: not due, so nothing runs at start.
    third = await start_app(db_path, fake_providers, run_sync=True)
    try:
        assert not await third.sync.due()
    finally:
        await third.stop(grace=1)
    assert len(job_runs()) == 1


async def test_refresh_models_rpc_runs_the_same_path(
    synced_app: StageConfigApp, fake_providers: FakeProviders
) -> None:
    async with grpc.aio.insecure_channel(synced_app.target) as channel:
        stub = pbg.StageConfigServiceStub(channel)
        await configure_poem(stub, "o3-mini")
        fake_providers.set_models(ProviderKind.OPENAI, ["gpt-5"])
        answer = await stub.RefreshModels(pb.RefreshModelsRequest(stage_type=1))
        (result,) = answer.results
        assert (result.replaced_model, result.selected_model) == ("o3-mini", "gpt-5")
        assert result.status == pb.CONFIG_STATUS_WARNING
        everything = await stub.RefreshModels(pb.RefreshModelsRequest())
        assert [r.stage_type for r in everything.results] == [pb.STAGE_TYPE_POEM]
        refreshed = await stub.ListModels(pb.ListModelsRequest(stage_type=1, refresh=True))
        assert list(refreshed.models) == ["gpt-5"]
