"""Keys nobody verified are shown as such, and never displace a working config.

A real server on port 0 and the real FakeProviders HTTP server: SpeechKit (no free key
check) is UNVERIFIED and stays so through the sync; an OpenAI-compatible proxy that
neither accepts nor rejects a key (LiteLLM without its database: HTTP 400 "No connected
db.") or an unreachable provider cannot replace an ACTIVE config unless the update sets
``allow_unverified``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import open_storage
from stageconfig_server.crypto import fingerprint
from stageconfig_server.db.records import ConfigWrite
from stageconfig_server.domain import (
    ChangeReason,
    ConfigStatus,
    ProviderKind,
    StageType,
)
from stageconfig_server.providers.speechkit import MODELS, UNVERIFIED_REASON
from tests.fakes.provider_server import FakeProviders
from tests.server.test_core_rpcs import state_of
from tests.support.servers import server_env, settings_for, start_app

MASTER_KEY = "sk-litellm-master-key-0001"
TYPO_KEY = "sk-litellm-master-kye-0001"
OTHER_KEY = "sk-another-working-key-0002"
VOICE_KEY = "AQVN-speechkit-key-0003"
GEMINI_KEY = "AIza-gemini-key-0004"

Stub = pbg.StageConfigServiceStub
Watch = grpc.aio.UnaryStreamCall[pb.WatchConfigRequest, pb.WatchConfigResponse]


def poem(
    key: str | None, *, model: str | None = None, allow_unverified: bool = False
) -> pb.UpdateConfigRequest:
    request = pb.UpdateConfigRequest(
        stage_type=pb.STAGE_TYPE_POEM,
        provider_kind=pb.PROVIDER_KIND_OPENAI,
        allow_unverified=allow_unverified,
    )
    if key is not None:
        request.api_key = key
    if model is not None:
        request.model = model
    return request


def voice(key: str = VOICE_KEY, model: str | None = None) -> pb.UpdateConfigRequest:
    request = pb.UpdateConfigRequest(
        stage_type=pb.STAGE_TYPE_VOICE, provider_kind=pb.PROVIDER_KIND_SPEECHKIT, api_key=key
    )
    if model is not None:
        request.model = model
    return request


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "FAILED_PRECONDITION must carry rich status details"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo detail")


async def configs(stub: Stub) -> dict[int, pb.StageConfig]:
    listed = await stub.ListConfigs(pb.ListConfigsRequest())
    return {view.stage_type: view.config for view in listed.stages}


async def next_message(call: Watch) -> pb.WatchConfigResponse:
    message = await asyncio.wait_for(call.read(), 10)
    assert message is not grpc.aio.EOF, "the stream ended"
    assert isinstance(message, pb.WatchConfigResponse)
    return message


@pytest.fixture
async def watch(stub: Stub) -> AsyncIterator[Watch]:
    """A POEM watcher (its snapshot may come before or after the test's first save)."""
    call = stub.WatchConfig(pb.WatchConfigRequest(stage_types=[pb.STAGE_TYPE_POEM]))
    try:
        yield call
    finally:
        call.cancel()


async def assert_nothing_pushed(call: Watch, head: int) -> None:
    """The next message is a heartbeat at ``head``: no change reached the watcher."""
    message = await next_message(call)
    assert message.WhichOneof("event") == "heartbeat", message
    assert message.heartbeat.head_revision == head


async def read_to_head(call: Watch, head: int) -> list[pb.Change]:
    """Every change up to the first heartbeat at ``head`` or later (a snapshot is
    skipped)."""
    changes = []
    while True:
        message = await next_message(call)
        kind = message.WhichOneof("event")
        if kind == "change":
            changes.append(message.change)
        elif kind == "heartbeat" and message.heartbeat.head_revision >= head:
            return changes


# -- SpeechKit: no free key check, so never ACTIVE ------------------------------------------


async def test_a_speechkit_key_is_stored_unverified_with_a_reason_and_no_network(
    stub: Stub, fake_providers: FakeProviders
) -> None:
    answer = await stub.UpdateConfig(voice(model="jane:good"))
    assert answer.written
    assert answer.config.status == pb.CONFIG_STATUS_UNVERIFIED
    assert answer.config.status_reason == UNVERIFIED_REASON
    assert answer.config.status_cause == pb.STATUS_CAUSE_UNSPECIFIED
    assert list(answer.models) == list(MODELS)
    # Every view shows it so: the admin's list, the worker's read, the model list.
    listed = (await configs(stub))[pb.STAGE_TYPE_VOICE]
    assert (listed.status, listed.status_reason) == (pb.CONFIG_STATUS_UNVERIFIED, UNVERIFIED_REASON)
    active = await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_VOICE))
    assert active.config.status == pb.CONFIG_STATUS_UNVERIFIED
    models = await stub.ListModels(pb.ListModelsRequest(stage_type=pb.STAGE_TYPE_VOICE))
    assert models.status == pb.CONFIG_STATUS_UNVERIFIED
    # Nothing was asked of Yandex: there is nothing free to ask.
    assert [r for r in fake_providers.requests if r.kind is ProviderKind.SPEECHKIT] == []


async def test_the_model_sync_keeps_a_speechkit_config_unverified(stub: Stub) -> None:
    stored = await stub.UpdateConfig(voice())
    refreshed = await stub.RefreshModels(pb.RefreshModelsRequest(stage_type=pb.STAGE_TYPE_VOICE))
    (result,) = refreshed.results
    assert (result.status, result.status_reason) == (pb.CONFIG_STATUS_UNVERIFIED, UNVERIFIED_REASON)
    everything = await stub.RefreshModels(pb.RefreshModelsRequest())
    assert [r.status for r in everything.results] == [pb.CONFIG_STATUS_UNVERIFIED]
    listed = (await configs(stub))[pb.STAGE_TYPE_VOICE]
    assert listed.status == pb.CONFIG_STATUS_UNVERIFIED
    # Nothing visible changed: no new revision woke the workers.
    assert listed.revision == stored.config.revision


async def test_the_sync_corrects_a_speechkit_config_an_older_server_stored_as_active(
    db_path: Path, fake_providers: FakeProviders
) -> None:
    # An older server stored SpeechKit keys as ACTIVE: write such a row directly.
    engine, repository, cipher = await open_storage(settings_for(server_env(db_path, None)))
    try:
        await repository.write_config(
            ConfigWrite(
                stage_type=StageType.VOICE,
                provider_kind=ProviderKind.SPEECHKIT,
                api_key_encrypted=cipher.encrypt_key(VOICE_KEY),
                api_key_fingerprint=fingerprint(VOICE_KEY),
                model="alena",
                models_cache=MODELS,
                models_cache_updated_at=None,
                status=ConfigStatus.ACTIVE,
                status_cause=None,
                status_reason="",
                options={},
                actor="older-server",
                reason=ChangeReason.ADMIN_UPDATE,
                new_key=True,
            ),
            0,
        )
    finally:
        await engine.dispose()
    app = await start_app(db_path, fake_providers)
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            assert (await configs(stub))[pb.STAGE_TYPE_VOICE].status == pb.CONFIG_STATUS_ACTIVE
            await app.sync.run_once()
            corrected = (await configs(stub))[pb.STAGE_TYPE_VOICE]
            assert corrected.status == pb.CONFIG_STATUS_UNVERIFIED
            assert corrected.status_reason == UNVERIFIED_REASON
            assert (corrected.model, corrected.revision) == ("alena", 2)
    finally:
        await app.stop(grace=1)


# -- an unverifiable key over a working config --------------------------------------------


async def test_litellm_no_connected_db_does_not_displace_a_working_config(
    stub: Stub, fake_providers: FakeProviders, watch: Watch
) -> None:
    working = await stub.UpdateConfig(poem(MASTER_KEY, model="gpt-4o"))
    assert working.config.status == pb.CONFIG_STATUS_ACTIVE
    await read_to_head(watch, head=1)
    fake_providers.fail_key(TYPO_KEY, "no_connected_db")  # LiteLLM: only the master key
    before = await state_of(stub)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateConfig(poem(TYPO_KEY))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details() == (
        "OpenAI did not return a usable model list (HTTP 400: No connected db). The key could "
        "not be verified and stage POEM holds a working config (revision 1, OPENAI, ACTIVE), "
        "so nothing was changed; set allow_unverified to store the key anyway."
    )
    info = error_info(caught.value)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "KEY_UNVERIFIED",
        "stageconfig",
        {"cause": "UPSTREAM"},
    )
    # Nothing written, nothing pushed; workers keep the working key.
    assert await state_of(stub) == before
    await assert_nothing_pushed(watch, head=1)
    active = await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_POEM))
    assert active.config.api_key == MASTER_KEY

    # validate_only answers the same: it runs every check.
    preview = poem(TYPO_KEY)
    preview.validate_only = True
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await stub.UpdateConfig(preview)
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(again.value).reason == "KEY_UNVERIFIED"
    assert await state_of(stub) == before


async def test_allow_unverified_stores_it_as_unverified_and_pushes_it(
    stub: Stub, fake_providers: FakeProviders, watch: Watch
) -> None:
    await stub.UpdateConfig(poem(MASTER_KEY, model="o3-mini"))
    await read_to_head(watch, head=1)
    fake_providers.fail_key(TYPO_KEY, "no_connected_db")

    stored = await stub.UpdateConfig(poem(TYPO_KEY, allow_unverified=True))
    assert stored.written
    config = stored.config
    assert (config.revision, config.status, config.status_cause) == (
        2,
        pb.CONFIG_STATUS_UNVERIFIED,
        pb.STATUS_CAUSE_UPSTREAM,
    )
    assert config.status_reason == (
        "stored without verification (allow_unverified): OpenAI did not return a usable "
        "model list (HTTP 400: No connected db)"
    )
    # No model given and none listed: the stored model and the last good cache carry over.
    assert config.model == "o3-mini"
    assert set(stored.models) == {"gpt-4o", "gpt-4o-mini", "o3-mini"}
    (change,) = await read_to_head(watch, head=2)
    assert (change.revision, change.config.status) == (2, pb.CONFIG_STATUS_UNVERIFIED)
    active = await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_POEM))
    assert active.config.api_key == TYPO_KEY


async def test_an_unreachable_provider_cannot_replace_a_working_config_of_another_provider(
    db_path: Path, fake_providers: FakeProviders
) -> None:
    # OpenAI's endpoint is a closed port: connection refused, every time.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    unreachable = f"http://127.0.0.1:{port}/v1"
    app = await start_app(db_path, fake_providers, STAGECONFIG_OPENAI_BASE_URL=unreachable)
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            await stub.UpdateConfig(
                pb.UpdateConfigRequest(
                    stage_type=pb.STAGE_TYPE_POEM,
                    provider_kind=pb.PROVIDER_KIND_GEMINI,
                    api_key=GEMINI_KEY,
                )
            )
            before = await state_of(stub)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.UpdateConfig(poem(OTHER_KEY, model="gpt-4o"))
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert caught.value.details() == (
                f"OpenAI could not be reached (connection to {unreachable} failed: "
                "ConnectError). The key could not be verified and stage POEM holds a working "
                "config (revision 1, GEMINI, ACTIVE), so nothing was changed; set "
                "allow_unverified to store the key anyway."
            )
            assert dict(error_info(caught.value).metadata) == {"cause": "NETWORK"}
            assert await state_of(stub) == before

            stored = await stub.UpdateConfig(poem(OTHER_KEY, model="gpt-4o", allow_unverified=True))
            assert (stored.config.provider_kind, stored.config.status) == (
                pb.PROVIDER_KIND_OPENAI,
                pb.CONFIG_STATUS_UNVERIFIED,
            )
            assert stored.config.status_cause == pb.STATUS_CAUSE_NETWORK
            assert list(stored.models) == []  # nothing was ever listed for OpenAI here
    finally:
        await app.stop(grace=1)


async def test_a_failing_provider_is_refused_over_a_warning_config_too(
    stub: Stub, fake_providers: FakeProviders
) -> None:
    await stub.UpdateConfig(poem(MASTER_KEY, model="o3-mini"))
    fake_providers.set_models(ProviderKind.OPENAI, ["gpt-5", "gpt-5-mini"])
    refreshed = await stub.RefreshModels(pb.RefreshModelsRequest(stage_type=pb.STAGE_TYPE_POEM))
    assert refreshed.results[0].status == pb.CONFIG_STATUS_WARNING  # the model was replaced
    fake_providers.set_failure(ProviderKind.OPENAI, "server_error")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateConfig(poem(OTHER_KEY))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "(revision 2, OPENAI, WARNING)" in (caught.value.details() or "")


async def test_with_nothing_working_stored_an_unverifiable_key_is_stored_as_error(
    stub: Stub, fake_providers: FakeProviders
) -> None:
    fake_providers.fail_key(TYPO_KEY, "no_connected_db")
    first = await stub.UpdateConfig(poem(TYPO_KEY, model="gpt-4o"))
    assert (first.written, first.config.status) == (True, pb.CONFIG_STATUS_ERROR)
    assert first.config.status_reason == (
        "the key could not be verified: OpenAI did not return a usable model list "
        "(HTTP 400: No connected db)"
    )
    # ERROR is not working: another unverifiable key replaces it without the flag.
    fake_providers.fail_key(OTHER_KEY, "server_error")
    second = await stub.UpdateConfig(poem(OTHER_KEY))
    assert (second.config.revision, second.config.status) == (2, pb.CONFIG_STATUS_ERROR)
    # Nor is UNVERIFIED: nothing proved that key either.
    third = await stub.UpdateConfig(poem(TYPO_KEY, allow_unverified=True))
    assert third.config.status == pb.CONFIG_STATUS_UNVERIFIED
    fourth = await stub.UpdateConfig(poem(OTHER_KEY))
    assert (fourth.config.revision, fourth.config.status) == (4, pb.CONFIG_STATUS_ERROR)


async def test_a_rejected_key_stays_refused_even_with_allow_unverified(
    stub: Stub, fake_providers: FakeProviders
) -> None:
    await stub.UpdateConfig(poem(MASTER_KEY, model="gpt-4o"))
    before = await state_of(stub)
    fake_providers.reject_key(TYPO_KEY)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateConfig(poem(TYPO_KEY, allow_unverified=True))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "KEY_REJECTED_AUTH"
    assert await state_of(stub) == before


async def test_an_unverified_key_the_sync_later_verifies_turns_active(
    stub: Stub, fake_providers: FakeProviders
) -> None:
    await stub.UpdateConfig(poem(MASTER_KEY, model="gpt-4o"))
    fake_providers.set_failure(ProviderKind.OPENAI, "server_error")
    stored = await stub.UpdateConfig(poem(OTHER_KEY, allow_unverified=True))
    assert stored.config.status == pb.CONFIG_STATUS_UNVERIFIED
    fake_providers.set_failure(ProviderKind.OPENAI, None)
    refreshed = await stub.RefreshModels(pb.RefreshModelsRequest(stage_type=pb.STAGE_TYPE_POEM))
    assert (refreshed.results[0].status, refreshed.results[0].status_reason) == (
        pb.CONFIG_STATUS_ACTIVE,
        "",
    )


async def test_a_model_change_with_the_working_key_is_not_refused_when_unverifiable(
    stub: Stub, fake_providers: FakeProviders
) -> None:
    # Same provider, key and options: no proven key is displaced, only the model moves.
    await stub.UpdateConfig(poem(MASTER_KEY, model="gpt-4o"))
    fake_providers.set_failure(ProviderKind.OPENAI, "server_error")
    moved = await stub.UpdateConfig(poem(None, model="o3-mini"))
    assert (moved.written, moved.config.model, moved.config.status) == (
        True,
        "o3-mini",
        pb.CONFIG_STATUS_ERROR,
    )
    active = await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_POEM))
    assert active.config.api_key == MASTER_KEY
