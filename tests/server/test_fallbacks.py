"""Fallback routes and key pools (issue 16), server side: a real server on port 0, a
real SQLite file and the real fake providers."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.domain import ProviderKind
from stageconfig_server.maintenance import rotate_keys
from tests.fakes.provider_server import FakeProviders
from tests.server.test_core_rpcs import bad_request_field, state_of
from tests.support.servers import server_env, settings_for, start_app

GEMINI_KEY = "AIzaSy-FBLEAK-primary-0001"
OPENAI_KEY = "sk-FBLEAK-openai-0002"
YANDEX_KEY = "AQVN-FBLEAK-yandex-0003"
VOICE_KEYS = ("AQVN-FBLEAK-voice-a-0004", "AQVN-FBLEAK-voice-b-0005", "AQVN-FBLEAK-voice-c-0006")
ALL_KEYS = (GEMINI_KEY, OPENAI_KEY, YANDEX_KEY, *VOICE_KEYS)


def poem_request(*routes: pb.RouteUpdate, **extra: object) -> pb.UpdateConfigRequest:
    """POEM on GEMINI with ``routes`` as its fallbacks."""
    values: dict[str, object] = {"api_key": GEMINI_KEY, "model": "gemini-2.5-pro", **extra}
    return pb.UpdateConfigRequest(
        stage_type=pb.STAGE_TYPE_POEM,
        provider_kind=pb.PROVIDER_KIND_GEMINI,
        fallbacks=list(routes),
        **values,  # type: ignore[arg-type]
    )


def openai_route(**extra: object) -> pb.RouteUpdate:
    values: dict[str, object] = {"api_key": OPENAI_KEY, "model": "gpt-4o-mini", **extra}
    return pb.RouteUpdate(provider_kind=pb.PROVIDER_KIND_OPENAI, **values)  # type: ignore[arg-type]


def yandex_route(**extra: object) -> pb.RouteUpdate:
    values: dict[str, object] = {"api_key": YANDEX_KEY, "options": {"folder_id": "b1gfolder"}}
    return pb.RouteUpdate(provider_kind=pb.PROVIDER_KIND_YANDEX_GPT, **{**values, **extra})  # type: ignore[arg-type]


async def active(
    stub: pbg.StageConfigServiceStub, stage: int = pb.STAGE_TYPE_POEM
) -> pb.StageConfig:
    return (await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=stage))).config


async def admin_view(
    stub: pbg.StageConfigServiceStub, stage: int = pb.STAGE_TYPE_POEM
) -> pb.StageConfig:
    configs = await stub.ListConfigs(pb.ListConfigsRequest())
    return next(v.config for v in configs.stages if v.stage_type == stage)


def database_text(db_path: Path) -> str:
    with sqlite3.connect(db_path) as conn:
        return "\n".join(conn.iterdump())


async def test_poem_routes_are_stored_verified_and_served_in_order(
    stub: pbg.StageConfigServiceStub, db_path: Path
) -> None:
    answer = await stub.UpdateConfig(poem_request(openai_route(), yandex_route()))
    assert answer.written
    routes = answer.config.fallbacks
    assert [r.provider_kind for r in routes] == [
        pb.PROVIDER_KIND_OPENAI,
        pb.PROVIDER_KIND_YANDEX_GPT,
    ]
    assert [r.model for r in routes] == ["gpt-4o-mini", "yandexgpt/latest"]
    assert all(r.status == pb.CONFIG_STATUS_ACTIVE for r in routes)
    assert all(r.api_key_masked and r.api_key_fingerprint for r in routes)
    assert OPENAI_KEY not in answer.config.SerializeToString().decode("latin-1")

    worker = await active(stub)
    assert [r.api_key for r in worker.fallbacks] == [OPENAI_KEY, YANDEX_KEY]
    assert not any(r.api_key_masked for r in worker.fallbacks)
    assert dict(worker.fallbacks[1].options) == {"folder_id": "b1gfolder"}

    admin = await admin_view(stub)
    assert [r.api_key_fingerprint for r in admin.fallbacks] == [
        r.api_key_fingerprint for r in worker.fallbacks
    ]
    assert all(r.api_key_masked for r in admin.fallbacks)

    # Nothing on disk holds a plaintext key (rows, api_keys, the history JSON).
    dump = database_text(db_path)
    assert not [key for key in ALL_KEYS if key in dump]
    assert "fallbacks[0].model" in dump


async def test_voice_key_pool_and_omitted_keys_keep_the_stored_ones(
    stub: pbg.StageConfigServiceStub,
) -> None:
    pool = [
        pb.RouteUpdate(provider_kind=pb.PROVIDER_KIND_SPEECHKIT, api_key=k, model="jane:good")
        for k in VOICE_KEYS[1:]
    ]
    first = await stub.UpdateConfig(
        pb.UpdateConfigRequest(
            stage_type=pb.STAGE_TYPE_VOICE,
            provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
            api_key=VOICE_KEYS[0],
            model="jane:good",
            fallbacks=pool,
        )
    )
    assert [r.model for r in first.config.fallbacks] == ["jane:good", "jane:good"]
    fps = [r.api_key_fingerprint for r in first.config.fallbacks]
    assert len(set(fps)) == 2

    # Keys omitted by position: the stored keys stay; a new model is taken.
    same_keys = [
        pb.RouteUpdate(provider_kind=pb.PROVIDER_KIND_SPEECHKIT, model="alena:good"),
        pb.RouteUpdate(provider_kind=pb.PROVIDER_KIND_SPEECHKIT),
    ]
    await stub.UpdateConfig(
        pb.UpdateConfigRequest(
            stage_type=pb.STAGE_TYPE_VOICE,
            provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
            fallbacks=same_keys,
        )
    )
    voice = await active(stub, pb.STAGE_TYPE_VOICE)
    assert [r.api_key for r in voice.fallbacks] == list(VOICE_KEYS[1:])
    assert [r.model for r in voice.fallbacks] == ["alena:good", "jane:good"]

    # Reordered by fingerprint: each key follows its fingerprint, not its position.
    reordered = [
        pb.RouteUpdate(provider_kind=pb.PROVIDER_KIND_SPEECHKIT, api_key_fingerprint=fps[1]),
        pb.RouteUpdate(provider_kind=pb.PROVIDER_KIND_SPEECHKIT, api_key_fingerprint=fps[0]),
    ]
    await stub.UpdateConfig(
        pb.UpdateConfigRequest(
            stage_type=pb.STAGE_TYPE_VOICE,
            provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
            fallbacks=reordered,
        )
    )
    voice = await active(stub, pb.STAGE_TYPE_VOICE)
    assert [r.api_key for r in voice.fallbacks] == [VOICE_KEYS[2], VOICE_KEYS[1]]
    assert [r.model for r in voice.fallbacks] == ["jane:good", "alena:good"]


async def test_an_empty_list_keeps_the_routes_and_clear_fallbacks_clears_them(
    stub: pbg.StageConfigServiceStub,
) -> None:
    await stub.UpdateConfig(poem_request(openai_route()))
    # An old client that knows nothing of fallbacks changes the model only.
    kept = await stub.UpdateConfig(poem_request(model="gemini-2.5-flash"))
    assert kept.written
    assert [r.api_key_fingerprint != "" for r in kept.config.fallbacks] == [True]
    assert (await active(stub)).fallbacks[0].api_key == OPENAI_KEY

    cleared = await stub.UpdateConfig(poem_request(clear_fallbacks=True))
    assert cleared.written
    assert list(cleared.config.fallbacks) == []
    assert list((await active(stub)).fallbacks) == []
    history = await stub.GetConfigHistory(pb.GetConfigHistoryRequest(page_size=1))
    changed = {c.field: (c.old_value, c.new_value) for c in history.entries[0].changes}
    assert changed["fallbacks[0].provider_kind"] == ("OPENAI", "")


def _too_many() -> list[pb.RouteUpdate]:
    return [
        pb.RouteUpdate(provider_kind=pb.PROVIDER_KIND_OPENAI, api_key=f"sk-many-{i}")
        for i in range(9)
    ]


BAD_ROUTES = [
    (
        [pb.RouteUpdate(provider_kind=pb.PROVIDER_KIND_SUNO, api_key="x")],
        "fallbacks[0].provider_kind",
    ),
    ([openai_route(), pb.RouteUpdate(provider_kind=0)], "fallbacks[1].provider_kind"),
    ([openai_route(), openai_route()], "fallbacks[1]"),
    (
        [
            pb.RouteUpdate(
                provider_kind=pb.PROVIDER_KIND_GEMINI, api_key=GEMINI_KEY, model="gemini-2.5-flash"
            )
        ],
        "fallbacks[0]",
    ),
    (_too_many(), "fallbacks"),
    ([openai_route(model="gpt-9-nonexistent")], "fallbacks[0].model"),
    ([openai_route(model="bad model")], "fallbacks[0].model"),
    ([openai_route(api_key="sk-\nnewline")], "fallbacks[0].api_key"),
    ([openai_route(), yandex_route(options={})], "fallbacks[1].options.folder_id"),
    ([openai_route(options={"folder_id": "b1g"})], "fallbacks[0].options.folder_id"),
    (
        [pb.RouteUpdate(provider_kind=pb.PROVIDER_KIND_OPENAI, api_key_fingerprint="XYZ")],
        "fallbacks[0].api_key_fingerprint",
    ),
    (
        [pb.RouteUpdate(provider_kind=pb.PROVIDER_KIND_OPENAI, api_key_fingerprint="abcdef")],
        "fallbacks[0].api_key_fingerprint",
    ),
]


@pytest.mark.parametrize(("routes", "field"), BAD_ROUTES)
async def test_bad_routes_are_invalid_argument_naming_the_field_and_write_nothing(
    stub: pbg.StageConfigServiceStub, routes: list[pb.RouteUpdate], field: str
) -> None:
    await stub.UpdateConfig(poem_request(yandex_route()))
    before = await state_of(stub)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateConfig(poem_request(*routes, model="gemini-2.5-flash"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_field(caught.value) == field
    assert await state_of(stub) == before


async def test_clear_fallbacks_with_a_list_is_refused(stub: pbg.StageConfigServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateConfig(poem_request(openai_route(), clear_fallbacks=True))
    assert bad_request_field(caught.value) == "clear_fallbacks"


async def test_a_rejected_route_key_refuses_the_update(
    stub: pbg.StageConfigServiceStub,
    fake_providers: FakeProviders,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await stub.UpdateConfig(poem_request())
    before = await state_of(stub)
    fake_providers.reject_key(OPENAI_KEY)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateConfig(poem_request(openai_route()))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "fallbacks[0]" in (caught.value.details() or "")
    assert OPENAI_KEY not in (caught.value.details() or "")
    assert await state_of(stub) == before
    assert not [key for key in ALL_KEYS if key in caplog.text]


async def test_an_unreachable_route_provider_stores_the_route_as_error(
    stub: pbg.StageConfigServiceStub, fake_providers: FakeProviders
) -> None:
    fake_providers.set_failure(ProviderKind.OPENAI, "server_error")
    answer = await stub.UpdateConfig(poem_request(openai_route()))
    assert answer.written
    route = answer.config.fallbacks[0]
    assert route.status == pb.CONFIG_STATUS_ERROR
    assert route.status_reason
    assert route.model == "gpt-4o-mini"
    assert answer.config.status == pb.CONFIG_STATUS_ACTIVE


async def test_rollback_restores_the_routes(stub: pbg.StageConfigServiceStub) -> None:
    first = await stub.UpdateConfig(poem_request(openai_route(), yandex_route()))
    await stub.UpdateConfig(poem_request(clear_fallbacks=True))
    assert list((await active(stub)).fallbacks) == []
    rolled = await stub.RollbackConfig(
        pb.RollbackConfigRequest(stage_type=pb.STAGE_TYPE_POEM, to_revision=first.config.revision)
    )
    assert [r.model for r in rolled.config.fallbacks] == ["gpt-4o-mini", "yandexgpt/latest"]
    assert [r.api_key for r in (await active(stub)).fallbacks] == [OPENAI_KEY, YANDEX_KEY]


async def test_the_model_refresh_replaces_a_vanished_model_on_a_route(
    stub: pbg.StageConfigServiceStub, fake_providers: FakeProviders
) -> None:
    await stub.UpdateConfig(poem_request(openai_route()))
    fake_providers.set_models(ProviderKind.OPENAI, ["gpt-4.1"])
    await stub.RefreshModels(pb.RefreshModelsRequest(stage_type=pb.STAGE_TYPE_POEM))
    config = await active(stub)
    route = config.fallbacks[0]
    assert route.model == "gpt-4.1"
    assert route.status == pb.CONFIG_STATUS_WARNING
    assert route.status_cause == pb.STATUS_CAUSE_MODEL_REPLACED
    assert route.api_key == OPENAI_KEY
    assert config.model == "gemini-2.5-pro"
    history = await stub.GetConfigHistory(pb.GetConfigHistoryRequest(page_size=1))
    entry = history.entries[0]
    assert entry.reason == pb.CHANGE_REASON_MODEL_REPLACED
    changed = {c.field: (c.old_value, c.new_value) for c in entry.changes}
    assert changed["fallbacks[0].model"] == ("gpt-4o-mini", "gpt-4.1")


async def test_rotate_keys_re_encrypts_the_route_keys(
    db_path: Path, fake_providers: FakeProviders
) -> None:
    old, new = "old-fallback-secret-1c9e5a7b3d", "new-fallback-secret-8f2d4b6a0c"
    app = await start_app(db_path, fake_providers, ADMIN_SECRET_KEY=old)
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            await pbg.StageConfigServiceStub(channel).UpdateConfig(poem_request(openai_route()))
    finally:
        await app.stop(grace=1)
    env = server_env(db_path, fake_providers, ADMIN_SECRET_KEY=new, ADMIN_SECRET_KEY_PREVIOUS=old)
    assert await rotate_keys(settings_for(env)) >= 4  # 2 rows' keys, 2 api_keys, canary
    # Only the new secret from now on: the route's key still opens.
    app = await start_app(db_path, fake_providers, ADMIN_SECRET_KEY=new)
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            config = await active(pbg.StageConfigServiceStub(channel))
    finally:
        await app.stop(grace=1)
    assert config.fallbacks[0].api_key == OPENAI_KEY


async def test_validate_only_checks_the_routes_and_writes_nothing(
    stub: pbg.StageConfigServiceStub,
) -> None:
    await stub.UpdateConfig(poem_request(openai_route()))
    before = await state_of(stub)
    preview = await stub.UpdateConfig(poem_request(yandex_route(), validate_only=True))
    assert not preview.written
    assert [r.provider_kind for r in preview.config.fallbacks] == [pb.PROVIDER_KIND_YANDEX_GPT]
    assert preview.config.fallbacks[0].api_key_masked
    kept = await stub.UpdateConfig(poem_request(model="gemini-2.5-flash", validate_only=True))
    assert [r.provider_kind for r in kept.config.fallbacks] == [pb.PROVIDER_KIND_OPENAI]
    assert await state_of(stub) == before
