"""What an admin reads when a save fails says each thing once, with clean punctuation.

The exact shapes, from a real server talking to the real FakeProviders server (whose
error bodies are the providers' own).
"""

from __future__ import annotations

import socket
from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.domain import ProviderKind
from tests.fakes.provider_server import FakeProviders
from tests.server.test_core_rpcs import bad_request_field
from tests.support.servers import start_app

KEY = "sk-messages-key-0001"
BAD_KEY = "sk-messages-rejected-0002"

Stub = pbg.StageConfigServiceStub


def poem(key: str = KEY, model: str | None = None) -> pb.UpdateConfigRequest:
    request = pb.UpdateConfigRequest(
        stage_type=pb.STAGE_TYPE_POEM, provider_kind=pb.PROVIDER_KIND_OPENAI, api_key=key
    )
    if model is not None:
        request.model = model
    return request


def assert_clean(text: str) -> None:
    assert ".." not in text
    assert ".)." not in text
    assert text.count("could not be reached") <= 1
    assert text.count("rejected") <= 1


async def test_a_rejected_key_says_so_once(stub: Stub, fake_providers: FakeProviders) -> None:
    fake_providers.reject_key(BAD_KEY)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateConfig(poem(BAD_KEY))
    details = caught.value.details() or ""
    # The fake echoes the key, as Yandex does: it reaches nobody.
    assert details == (
        "OpenAI rejected the API key (HTTP 401: Incorrect API key provided: <token>). "
        "Nothing was changed."
    )
    assert_clean(details)


async def test_a_permission_failure_says_so_once(stub: Stub, fake_providers: FakeProviders) -> None:
    fake_providers.set_failure(ProviderKind.OPENAI, "permission")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateConfig(poem())
    assert caught.value.details() == (
        "OpenAI says this key lacks permission (HTTP 403: You have insufficient permissions "
        "for this operation. Missing scopes: api.model.read). Nothing was changed."
    )


async def test_no_model_and_a_failing_provider_names_the_field_and_the_way_out(
    stub: Stub, fake_providers: FakeProviders
) -> None:
    fake_providers.set_failure(ProviderKind.OPENAI, "server_error")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateConfig(poem())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_field(caught.value) == "model"
    details = caught.value.details() or ""
    assert details == (
        "model: is required: OpenAI did not return a usable model list (HTTP 500: The server "
        "had an error while processing your request), so there is no model list to choose "
        "from; name the model, or try again when the provider answers"
    )
    assert_clean(details)


async def test_no_model_and_an_unreachable_provider(
    db_path: Path, fake_providers: FakeProviders
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    unreachable = f"http://127.0.0.1:{port}/v1"
    app = await start_app(db_path, fake_providers, STAGECONFIG_OPENAI_BASE_URL=unreachable)
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.UpdateConfig(poem())
            details = caught.value.details() or ""
            assert details == (
                f"model: is required: OpenAI could not be reached (connection to {unreachable} "
                "failed: ConnectError), so there is no model list to choose from; name the "
                "model, or try again when the provider answers"
            )
            assert_clean(details)
            # What the docs tell the admin to do: name the model. With nothing working
            # stored, it is stored with status ERROR and the reason.
            stored = await stub.UpdateConfig(poem(model="gpt-4o"))
            assert stored.config.status == pb.CONFIG_STATUS_ERROR
            assert stored.config.status_reason == (
                f"the key could not be verified: OpenAI could not be reached (connection to "
                f"{unreachable} failed: ConnectError)"
            )
            assert_clean(stored.config.status_reason)
    finally:
        await app.stop(grace=1)
