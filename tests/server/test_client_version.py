"""WatchConfigRequest.client_version: kept per watcher, shown by ListWatchers, bounded.

A real server on port 0; streams opened with the raw stub, as any client would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.server.test_core_rpcs import bad_request_field

Stub = pbg.StageConfigServiceStub
Watch = grpc.aio.UnaryStreamCall[pb.WatchConfigRequest, pb.WatchConfigResponse]


@pytest.fixture
async def open_watch(stub: Stub) -> AsyncIterator[Callable[..., Watch]]:
    """Opens WatchConfig streams, all cancelled at the end."""
    calls: list[Watch] = []

    def opener(**request: object) -> Watch:
        call = stub.WatchConfig(pb.WatchConfigRequest(**request))  # type: ignore[arg-type]
        calls.append(call)
        return call

    try:
        yield opener
    finally:
        for call in calls:
            call.cancel()


async def first_message(call: Watch) -> pb.WatchConfigResponse:
    message = await asyncio.wait_for(call.read(), 10)
    assert isinstance(message, pb.WatchConfigResponse)
    return message


async def watchers_by_id(stub: Stub) -> dict[str, pb.WatcherInfo]:
    listed = await stub.ListWatchers(pb.ListWatchersRequest())
    return {w.client_id: w for w in listed.watchers}


async def test_list_watchers_shows_each_clients_version(
    stub: Stub, open_watch: Callable[..., Watch]
) -> None:
    longest = "v" + "9" * 63
    versions = {
        "worker-a": "0.9.0",
        "worker-b": "stageconfig-python 1.2.3+local (CPython 3.12)",
        "worker-c": longest,
        "worker-d": "1.0-β",  # printable, not only ASCII
        "old-client": "",  # a client older than the field sends nothing
    }
    for client_id, version in versions.items():
        call = open_watch(client_id=client_id, client_version=version)
        assert (await first_message(call)).WhichOneof("event") == "snapshot"
    shown = await watchers_by_id(stub)
    assert {cid: shown[cid].client_version for cid in versions} == versions


@pytest.mark.parametrize(
    ("version", "says"),
    [
        ("v" + "9" * 64, "must be at most 64 characters"),
        ("1.0\n", "must contain only printable characters"),
        ("1.0\x1b[31m", "must contain only printable characters"),
        ("1.0\u202e", "must contain only printable characters"),  # right-to-left override
    ],
)
async def test_a_bad_version_is_invalid_argument_naming_the_field(
    stub: Stub, open_watch: Callable[..., Watch], version: str, says: str
) -> None:
    call = open_watch(client_id="bad-version", client_version=version)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await first_message(call)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_field(caught.value) == "client_version"
    assert caught.value.details() == f"client_version: {says}"
    assert "bad-version" not in await watchers_by_id(stub)
