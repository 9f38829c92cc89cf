"""A save (or rollback) that would store exactly what is stored writes nothing.

Same provider, key, model and options: ``written=false``, the current revision, no
history row, nothing pushed to watchers. A real server, the real FakeProviders server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.domain import ProviderKind
from tests.fakes.provider_server import FakeProviders
from tests.server.test_core_rpcs import state_of

KEY = "sk-identical-key-0001"
OTHER_KEY = "sk-identical-key-0002"
FOLDER = {"folder_id": "b1gfolder0123"}

Stub = pbg.StageConfigServiceStub
Watch = grpc.aio.UnaryStreamCall[pb.WatchConfigRequest, pb.WatchConfigResponse]


def poem(
    key: str | None = KEY, model: str | None = "gpt-4o", comment: str = ""
) -> pb.UpdateConfigRequest:
    request = pb.UpdateConfigRequest(
        stage_type=pb.STAGE_TYPE_POEM, provider_kind=pb.PROVIDER_KIND_OPENAI, comment=comment
    )
    if key is not None:
        request.api_key = key
    if model is not None:
        request.model = model
    return request


async def next_event(call: Watch) -> pb.WatchConfigResponse:
    message = await asyncio.wait_for(call.read(), 10)
    assert message is not grpc.aio.EOF, "the stream ended"
    assert isinstance(message, pb.WatchConfigResponse)
    return message


async def settle(call: Watch, head: int) -> None:
    """Read until a heartbeat says the watcher is current at ``head``."""
    while True:
        message = await next_event(call)
        if message.WhichOneof("event") == "heartbeat" and message.heartbeat.head_revision >= head:
            return


async def assert_nothing_pushed(call: Watch, head: int) -> None:
    message = await next_event(call)
    assert message.WhichOneof("event") == "heartbeat", message
    assert message.heartbeat.head_revision == head


@pytest.fixture
async def watch(stub: Stub) -> AsyncIterator[Watch]:
    call = stub.WatchConfig(pb.WatchConfigRequest())
    try:
        yield call
    finally:
        call.cancel()


async def test_an_identical_save_writes_nothing_and_wakes_nobody(stub: Stub, watch: Watch) -> None:
    saved = await stub.UpdateConfig(poem())
    assert saved.written
    await settle(watch, head=1)
    before = await state_of(stub)

    same = await stub.UpdateConfig(poem(comment="just checking"))
    assert not same.written
    assert same.config.revision == 1
    assert same.config.updated_at == saved.config.updated_at
    assert (same.config.model, same.config.status) == ("gpt-4o", pb.CONFIG_STATUS_ACTIVE)
    assert set(same.models) == {"gpt-4o", "gpt-4o-mini", "o3-mini"}
    # The same with nothing but the provider: the stored key, the stored model.
    kept = await stub.UpdateConfig(poem(key=None, model=None))
    assert (kept.written, kept.config.revision) == (False, 1)

    assert await state_of(stub) == before  # no history row, same head
    await assert_nothing_pushed(watch, head=1)

    # Any real change is written as before.
    moved = await stub.UpdateConfig(poem(model="o3-mini"))
    assert (moved.written, moved.config.revision) == (True, 2)
    rekeyed = await stub.UpdateConfig(poem(key=OTHER_KEY, model="o3-mini"))
    assert (rekeyed.written, rekeyed.config.revision) == (True, 3)


async def test_validate_only_of_an_identical_save_answers_the_stored_config(stub: Stub) -> None:
    await stub.UpdateConfig(poem())
    preview = poem()
    preview.validate_only = True
    answer = await stub.UpdateConfig(preview)
    assert (answer.written, answer.config.revision) == (False, 1)


async def test_options_count_in_the_comparison(stub: Stub) -> None:
    request = pb.UpdateConfigRequest(
        stage_type=pb.STAGE_TYPE_POEM,
        provider_kind=pb.PROVIDER_KIND_YANDEX_GPT,
        api_key="AQVN-yandex-key-0003",
        options=FOLDER,
    )
    first = await stub.UpdateConfig(request)
    assert first.written
    again = await stub.UpdateConfig(request)
    assert (again.written, again.config.revision) == (False, first.config.revision)
    request.options["folder_id"] = "b1gotherfolder"
    moved = await stub.UpdateConfig(request)
    assert (moved.written, moved.config.revision) == (True, first.config.revision + 1)


async def test_an_identical_speechkit_save_writes_nothing(stub: Stub) -> None:
    request = pb.UpdateConfigRequest(
        stage_type=pb.STAGE_TYPE_VOICE,
        provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
        api_key="AQVN-speechkit-0004",
        model="alena",
    )
    first = await stub.UpdateConfig(request)
    again = await stub.UpdateConfig(request)
    assert (again.written, again.config.revision) == (False, first.config.revision)
    assert again.config.status == pb.CONFIG_STATUS_UNVERIFIED


async def test_an_identical_save_over_an_unreachable_provider_is_no_op_not_refused(
    stub: Stub, fake_providers: FakeProviders
) -> None:
    await stub.UpdateConfig(poem())
    fake_providers.set_failure(ProviderKind.OPENAI, "server_error")
    same = await stub.UpdateConfig(poem())
    # Nothing would be displaced, so nothing to refuse; the stored config is unchanged.
    assert (same.written, same.config.revision, same.config.status) == (
        False,
        1,
        pb.CONFIG_STATUS_ACTIVE,
    )


async def test_a_rollback_to_what_is_stored_writes_nothing(stub: Stub, watch: Watch) -> None:
    await stub.UpdateConfig(poem())  # revision 1: gpt-4o
    await stub.UpdateConfig(poem(model="o3-mini"))  # 2
    await stub.UpdateConfig(poem())  # 3: gpt-4o again, same key
    await settle(watch, head=3)
    before = await state_of(stub)
    rolled = await stub.RollbackConfig(
        pb.RollbackConfigRequest(stage_type=pb.STAGE_TYPE_POEM, to_revision=1)
    )
    assert rolled.config.revision == 3
    assert await state_of(stub) == before
    await assert_nothing_pushed(watch, head=3)
    real = await stub.RollbackConfig(
        pb.RollbackConfigRequest(stage_type=pb.STAGE_TYPE_POEM, to_revision=2)
    )
    assert (real.config.revision, real.config.model) == (4, "o3-mini")
