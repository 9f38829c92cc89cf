"""UpdateConfig asks the provider before it commits (the plan's §5.3)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.domain import ProviderKind
from tests.fakes.provider_server import FakeProviders
from tests.server.test_core_rpcs import state_of
from tests.support.servers import start_app

GOOD_KEY = "sk-good-openai-key-1111"
BAD_KEY = "sk-rejected-openai-key-2222"


def poem_openai(key: str | None = GOOD_KEY, model: str | None = None) -> pb.UpdateConfigRequest:
    request = pb.UpdateConfigRequest(
        stage_type=pb.STAGE_TYPE_POEM, provider_kind=pb.PROVIDER_KIND_OPENAI
    )
    if key is not None:
        request.api_key = key
    if model is not None:
        request.model = model
    return request


async def test_rejected_key_is_failed_precondition_and_keeps_the_working_config(
    stub: pbg.StageConfigServiceStub, fake_providers: FakeProviders
) -> None:
    await stub.UpdateConfig(poem_openai(model="gpt-4o"))
    before = await state_of(stub)
    fake_providers.reject_key(BAD_KEY)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateConfig(poem_openai(BAD_KEY))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = caught.value.details() or ""
    assert details.startswith("OpenAI rejected the API key (HTTP 401: ")
    assert BAD_KEY not in details
    assert await state_of(stub) == before
    active = await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_POEM))
    assert active.config.api_key == GOOD_KEY


async def test_unreachable_provider_stores_with_error_status(
    stub: pbg.StageConfigServiceStub, fake_providers: FakeProviders
) -> None:
    fake_providers.set_failure(ProviderKind.OPENAI, "server_error")
    answer = await stub.UpdateConfig(poem_openai(model="gpt-4o"))
    assert answer.written
    assert answer.config.status == pb.CONFIG_STATUS_ERROR
    assert answer.config.status_cause == pb.STATUS_CAUSE_UPSTREAM
    assert "could not be verified" in answer.config.status_reason
    active = await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_POEM))
    assert (active.config.api_key, active.config.model) == (GOOD_KEY, "gpt-4o")


async def test_unreachable_provider_without_model_for_a_new_provider_is_invalid(
    stub: pbg.StageConfigServiceStub, fake_providers: FakeProviders
) -> None:
    fake_providers.set_failure(ProviderKind.OPENAI, "server_error")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateConfig(poem_openai())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_model_defaults_to_stored_if_offered_else_first(
    stub: pbg.StageConfigServiceStub, fake_providers: FakeProviders
) -> None:
    first = await stub.UpdateConfig(poem_openai())
    assert first.config.model == first.models[0]
    await stub.UpdateConfig(poem_openai(model="o3-mini"))
    kept = await stub.UpdateConfig(poem_openai(key="sk-another-good-key-3333"))
    assert kept.config.model == "o3-mini"
    fake_providers.set_models(ProviderKind.OPENAI, ["gpt-5", "gpt-5-mini"])
    moved = await stub.UpdateConfig(poem_openai())
    # "The first available" in the adapter's order (OpenAI: newest first).
    assert set(moved.models) == {"gpt-5", "gpt-5-mini"}
    assert moved.config.model == moved.models[0]


async def test_cache_is_written_with_the_config(stub: pbg.StageConfigServiceStub) -> None:
    await stub.UpdateConfig(poem_openai())
    models = await stub.ListModels(pb.ListModelsRequest(stage_type=pb.STAGE_TYPE_POEM))
    assert set(models.models) == {"gpt-4o", "gpt-4o-mini", "o3-mini"}
    assert models.updated_at.seconds > 0
    assert models.selected_model in models.models


async def test_validate_only_checks_everything_and_writes_nothing(
    stub: pbg.StageConfigServiceStub, fake_providers: FakeProviders
) -> None:
    before = await state_of(stub)
    request = poem_openai(model="gpt-4o-mini")
    request.validate_only = True
    answer = await stub.UpdateConfig(request)
    assert not answer.written
    assert answer.config.model == "gpt-4o-mini"
    assert answer.config.api_key_masked
    assert await state_of(stub) == before
    fake_providers.reject_key(BAD_KEY)
    bad = poem_openai(BAD_KEY)
    bad.validate_only = True
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateConfig(bad)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_hanging_provider_times_out_with_error(
    db_path: Path, fake_providers: FakeProviders
) -> None:
    app = await start_app(db_path, fake_providers, STAGECONFIG_PROVIDER_TIMEOUT_SECONDS="1")
    try:
        fake_providers.set_failure(ProviderKind.OPENAI, "hang")
        async with grpc.aio.insecure_channel(app.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            started = time.monotonic()
            answer = await stub.UpdateConfig(poem_openai(model="gpt-4o"), timeout=15)
            elapsed = time.monotonic() - started
        assert answer.config.status == pb.CONFIG_STATUS_ERROR
        assert answer.config.status_cause == pb.STATUS_CAUSE_NETWORK
        # Bounded by the provider timeout (plus the outer safety margin), not hanging.
        assert elapsed < 5
    finally:
        fake_providers.set_failure(ProviderKind.OPENAI, None)
        await app.stop(grace=1)
