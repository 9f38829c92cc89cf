"""Optimistic writes, history paging and rollback, through the real gRPC API (an
in-process server on port 0, providers faked by a real HTTP server)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.domain import ProviderKind
from tests.admin.conftest import GEMINI_KEY_A, OPENAI_KEY_B
from tests.fakes.provider_server import FakeProviders

POEM = pb.STAGE_TYPE_POEM


async def _update(
    stub: pbg.StageConfigServiceStub, provider: int, **fields: object
) -> pb.StageConfig:
    answer = await stub.UpdateConfig(
        pb.UpdateConfigRequest(stage_type=POEM, provider_kind=provider, **fields)  # type: ignore[arg-type]
    )
    return answer.config


def _details(error: grpc.aio.AioRpcError) -> list[object]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    found: list[object] = []
    for detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found.append(message)
    return found


async def _history(stub: pbg.StageConfigServiceStub, **fields: object) -> list[pb.HistoryEntry]:
    answer = await stub.GetConfigHistory(pb.GetConfigHistoryRequest(**fields))  # type: ignore[arg-type]
    return list(answer.entries)


async def test_stale_expected_revision_is_aborted_with_the_current_revision(
    stub: pbg.StageConfigServiceStub,
) -> None:
    created = await _update(
        stub, pb.PROVIDER_KIND_GEMINI, api_key=GEMINI_KEY_A, expected_revision=0
    )
    assert created.revision == 1

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _update(stub, pb.PROVIDER_KIND_OPENAI, api_key=OPENAI_KEY_B, expected_revision=0)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    infos = [d for d in _details(caught.value) if isinstance(d, error_details_pb2.ErrorInfo)]
    assert infos
    assert infos[0].metadata["current_revision"] == "1"
    assert OPENAI_KEY_B not in (caught.value.details() or "")

    # Nothing was written: same provider, same revision, one history row, no watcher news.
    listing = await stub.ListConfigs(pb.ListConfigsRequest())
    poem = next(s for s in listing.stages if s.stage_type == POEM)
    assert (poem.config.provider_kind, poem.config.revision) == (pb.PROVIDER_KIND_GEMINI, 1)
    assert listing.head_revision == 1
    assert [e.revision for e in await _history(stub)] == [1]

    # The matching revision is accepted.
    changed = await _update(
        stub, pb.PROVIDER_KIND_OPENAI, api_key=OPENAI_KEY_B, expected_revision=1
    )
    assert (changed.provider_kind, changed.revision) == (pb.PROVIDER_KIND_OPENAI, 2)


async def test_history_pages_newest_first_with_every_reason(
    stub: pbg.StageConfigServiceStub, fake_providers: FakeProviders
) -> None:
    # 1: an admin stores POEM.
    await _update(stub, pb.PROVIDER_KIND_GEMINI, api_key=GEMINI_KEY_A, model="gemini-2.5-flash")
    # 2: the sync finds a new model (a visible change: a SYNC revision).
    fake_providers.set_models(
        ProviderKind.GEMINI, ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-3-pro"]
    )
    await stub.RefreshModels(pb.RefreshModelsRequest(stage_type=POEM))
    # 3: the selected model vanishes: replaced, WARNING.
    fake_providers.set_models(ProviderKind.GEMINI, ["gemini-2.5-pro", "gemini-3-pro"])
    refreshed = await stub.RefreshModels(pb.RefreshModelsRequest(stage_type=POEM))
    assert refreshed.results[0].replaced_model == "gemini-2.5-flash"
    assert refreshed.results[0].status == pb.CONFIG_STATUS_WARNING
    # 4: an admin picks another model, with a comment.
    await _update(stub, pb.PROVIDER_KIND_GEMINI, model="gemini-3-pro", comment="newest model")
    # 5: rollback to 3 (its model is still offered).
    await stub.RollbackConfig(pb.RollbackConfigRequest(stage_type=POEM, to_revision=3))
    # 6: another stage, which a POEM-only history must not show.
    await stub.UpdateConfig(
        pb.UpdateConfigRequest(
            stage_type=pb.STAGE_TYPE_VOICE,
            provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
            api_key="AQVN-voice-key-000000000003",
        )
    )

    pages: list[list[pb.HistoryEntry]] = []
    token = ""
    while True:
        answer = await stub.GetConfigHistory(
            pb.GetConfigHistoryRequest(stage_type=POEM, page_size=2, page_token=token)
        )
        pages.append(list(answer.entries))
        token = answer.next_page_token
        if not token:
            break
    assert [[e.revision for e in page] for page in pages] == [[5, 4], [3, 2], [1]]
    reasons = {e.revision: e.reason for page in pages for e in page}
    assert reasons == {
        5: pb.CHANGE_REASON_ROLLBACK,
        4: pb.CHANGE_REASON_ADMIN_UPDATE,
        3: pb.CHANGE_REASON_MODEL_REPLACED,
        2: pb.CHANGE_REASON_SYNC,
        1: pb.CHANGE_REASON_ADMIN_UPDATE,
    }
    entries = {e.revision: e for page in pages for e in page}
    assert entries[4].comment == "newest model"
    assert entries[1].actor == "anonymous"
    replaced = {c.field: (c.old_value, c.new_value) for c in entries[3].changes}
    assert replaced["model"] == ("gemini-2.5-flash", "gemini-2.5-pro")
    shown = " ".join(
        f"{c.old_value} {c.new_value}" for page in pages for e in page for c in e.changes
    )
    assert GEMINI_KEY_A not in shown  # diffs are masked

    everything = await _history(stub)
    assert [e.revision for e in everything] == [6, 5, 4, 3, 2, 1]

    for bad in (
        pb.GetConfigHistoryRequest(page_token="not-a-token"),
        pb.GetConfigHistoryRequest(page_size=-1),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetConfigHistory(bad)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        fields = [
            v.field
            for d in _details(caught.value)
            if isinstance(d, error_details_pb2.BadRequest)
            for v in d.field_violations
        ]
        assert fields == ["page_token" if bad.page_token else "page_size"]


async def test_rollback_restores_provider_and_key_and_watchers_receive_it(
    stub: pbg.StageConfigServiceStub, fake_providers: FakeProviders
) -> None:
    first = await _update(stub, pb.PROVIDER_KIND_GEMINI, api_key=GEMINI_KEY_A)
    await _update(stub, pb.PROVIDER_KIND_OPENAI, api_key=OPENAI_KEY_B, model="gpt-4o")

    stream = stub.WatchConfig(pb.WatchConfigRequest(stage_types=[POEM], client_id="rollback"))
    try:
        snapshot = await asyncio.wait_for(stream.read(), 10)
        assert snapshot.snapshot.revision == 2
        assert snapshot.snapshot.configs[0].provider_kind == pb.PROVIDER_KIND_OPENAI

        fake_providers.clear_requests()
        restored = await stub.RollbackConfig(
            pb.RollbackConfigRequest(stage_type=POEM, to_revision=first.revision)
        )
        assert (restored.config.provider_kind, restored.config.revision) == (
            pb.PROVIDER_KIND_GEMINI,
            3,
        )
        assert restored.config.api_key_masked
        assert GEMINI_KEY_A not in restored.config.api_key
        # Re-verified with the provider, with the restored key.
        gemini_keys = [
            r.header("x-goog-api-key") or r.query.get("key")
            for r in fake_providers.requests
            if r.kind is ProviderKind.GEMINI
        ]
        assert GEMINI_KEY_A in gemini_keys

        async def next_change() -> pb.Change:
            while True:
                message = await stream.read()
                if message.WhichOneof("event") == "change":
                    return message.change

        change = await asyncio.wait_for(next_change(), 10)
        assert change.revision == 3
        assert change.reason == pb.CHANGE_REASON_ROLLBACK
        assert change.config.provider_kind == pb.PROVIDER_KIND_GEMINI
        assert change.config.api_key == GEMINI_KEY_A  # the worker role gets the plaintext
    finally:
        stream.cancel()

    active = await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=POEM))
    assert active.config.provider_kind == pb.PROVIDER_KIND_GEMINI
    assert active.config.api_key == GEMINI_KEY_A
    assert active.config.revision == 3

    # A revision of another stage, and a stale expected revision, change nothing.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RollbackConfig(
            pb.RollbackConfigRequest(stage_type=pb.STAGE_TYPE_VOICE, to_revision=1)
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RollbackConfig(
            pb.RollbackConfigRequest(stage_type=POEM, to_revision=2, expected_revision=2)
        )
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert (await stub.ListConfigs(pb.ListConfigsRequest())).head_revision == 3
