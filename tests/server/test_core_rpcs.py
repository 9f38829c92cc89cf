"""The unary RPCs against a real in-process server on port 0 with a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import StageConfigApp
from stageconfig_server.domain import ProviderKind, StageType
from stageconfig_server.errors import SecretMismatch
from tests.fakes.provider_server import FakeProviders
from tests.support.servers import TEST_SECRET, empty_legacy, start_app

# One recognisable key per stage, each with its provider and a model the fake offers.
STAGE_CASES = [
    (pb.STAGE_TYPE_POEM, pb.PROVIDER_KIND_GEMINI, "AIzaSy-poem-key-0001", "gemini-2.5-pro", {}),
    (pb.STAGE_TYPE_VOICE, pb.PROVIDER_KIND_SPEECHKIT, "AQVN-voice-key-0002", "jane:good", {}),
    (pb.STAGE_TYPE_SONG, pb.PROVIDER_KIND_SUNO, "suno-song-key-0003", "V5", {}),
    (pb.STAGE_TYPE_CLIP, pb.PROVIDER_KIND_PIKA, "fal-clip-key-0004:secret", None, {}),
]

VOICE_UPDATE = pb.UpdateConfigRequest(
    stage_type=pb.STAGE_TYPE_VOICE,
    provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
    api_key="AQVN-voice-key-0002",
)
"""A VOICE config (SpeechKit: no network, any key) with STAGE_CASES' VOICE key."""


async def state_of(stub: pbg.StageConfigServiceStub) -> bytes:
    """Everything an admin can observe, serialized: used to prove 'nothing changed'."""
    configs = await stub.ListConfigs(pb.ListConfigsRequest())
    history = await stub.GetConfigHistory(pb.GetConfigHistoryRequest(page_size=100))
    return configs.SerializeToString(deterministic=True) + history.SerializeToString(
        deterministic=True
    )


def bad_request_field(error: grpc.aio.AioRpcError) -> str:
    """The field named by the google.rpc.BadRequest detail of an error."""
    status = rpc_status.from_call(error)
    assert status is not None, "INVALID_ARGUMENT must carry rich status details"
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return bad.field_violations[0].field
    raise AssertionError("no BadRequest detail")


@pytest.mark.parametrize(("stage", "provider", "key", "model", "options"), STAGE_CASES)
async def test_update_then_get_returns_the_same_key(
    stub: pbg.StageConfigServiceStub,
    stage: int,
    provider: int,
    key: str,
    model: str | None,
    options: dict[str, str],
) -> None:
    request = pb.UpdateConfigRequest(
        stage_type=stage, provider_kind=provider, api_key=key, options=options
    )
    if model is not None:
        request.model = model
    updated = await stub.UpdateConfig(request)
    assert updated.written
    assert updated.config.api_key_masked
    assert key not in updated.config.api_key
    # SpeechKit has no key check: its configs are UNVERIFIED, never ACTIVE.
    unchecked = provider == pb.PROVIDER_KIND_SPEECHKIT
    assert updated.config.status == (
        pb.CONFIG_STATUS_UNVERIFIED if unchecked else pb.CONFIG_STATUS_ACTIVE
    )

    active = await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=stage))
    assert active.config.api_key == key
    assert not active.config.api_key_masked
    assert active.config.provider_kind == provider
    assert active.config.source == pb.CONFIG_SOURCE_DATABASE
    assert active.config.revision == updated.config.revision
    if model is not None:
        assert active.config.model == model
    else:
        assert active.config.model == updated.models[0]


async def _configure_all(stub: pbg.StageConfigServiceStub) -> None:
    for stage, provider, key, model, options in STAGE_CASES:
        request = pb.UpdateConfigRequest(
            stage_type=stage, provider_kind=provider, api_key=key, options=options
        )
        if model is not None:
            request.model = model
        await stub.UpdateConfig(request)


async def test_raw_database_holds_no_plaintext_key(
    app: StageConfigApp, stub: pbg.StageConfigServiceStub, db_path: Path
) -> None:
    await _configure_all(stub)
    await app.stop(grace=1)  # checkpoint the WAL so every byte is in files we read
    raw = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    for _stage, _provider, key, _model, _options in STAGE_CASES:
        assert key.encode() not in raw
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT * FROM provider_configs").fetchall()
        rows += conn.execute("SELECT * FROM api_keys").fetchall()
        rows += conn.execute("SELECT * FROM revision_log").fetchall()
    assert len(rows) == 12
    text = repr(rows)
    for _stage, _provider, key, _model, _options in STAGE_CASES:
        assert key not in text


async def test_list_configs_shows_all_stages_with_masked_keys(
    stub: pbg.StageConfigServiceStub,
) -> None:
    await stub.UpdateConfig(VOICE_UPDATE)
    listing = await stub.ListConfigs(pb.ListConfigsRequest())
    by_stage = {s.stage_type: s for s in listing.stages}
    assert set(by_stage) == {
        pb.STAGE_TYPE_POEM,
        pb.STAGE_TYPE_VOICE,
        pb.STAGE_TYPE_SONG,
        pb.STAGE_TYPE_CLIP,
    }
    voice = by_stage[pb.STAGE_TYPE_VOICE]
    assert voice.config.source == pb.CONFIG_SOURCE_DATABASE
    assert voice.config.api_key == "AQVN-…0002"
    assert voice.config.api_key_masked
    assert "alena" in voice.models
    assert list(voice.allowed_providers) == [pb.PROVIDER_KIND_SPEECHKIT]
    poem = by_stage[pb.STAGE_TYPE_POEM]
    assert poem.config.source == pb.CONFIG_SOURCE_UNCONFIGURED
    assert list(poem.allowed_providers) == [
        pb.PROVIDER_KIND_YANDEX_GPT,
        pb.PROVIDER_KIND_GEMINI,
        pb.PROVIDER_KIND_OPENAI,
    ]
    assert "AQVN-voice-key-0002" not in str(listing)


async def test_restart_keeps_everything(db_path: Path, fake_providers: FakeProviders) -> None:
    first = await start_app(db_path, fake_providers)
    try:
        async with grpc.aio.insecure_channel(first.target) as channel:
            await _configure_all(pbg.StageConfigServiceStub(channel))
    finally:
        await first.stop(grace=1)

    second = await start_app(db_path, fake_providers)
    try:
        async with grpc.aio.insecure_channel(second.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            for stage, provider, key, _model, _options in STAGE_CASES:
                active = await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=stage))
                assert (active.config.provider_kind, active.config.api_key) == (provider, key)
            history = await stub.GetConfigHistory(pb.GetConfigHistoryRequest())
            assert [e.revision for e in history.entries] == [4, 3, 2, 1]
    finally:
        await second.stop(grace=1)


async def test_wrong_secret_refuses_to_start(db_path: Path, fake_providers: FakeProviders) -> None:
    first = await start_app(db_path, fake_providers)
    await first.stop(grace=1)
    with pytest.raises(SecretMismatch, match="ADMIN_SECRET_KEY"):
        await start_app(db_path, fake_providers, ADMIN_SECRET_KEY="another-secret-entirely")


async def test_previous_secret_is_accepted_during_rotation(
    db_path: Path, fake_providers: FakeProviders
) -> None:
    first = await start_app(db_path, fake_providers)
    async with grpc.aio.insecure_channel(first.target) as channel:
        await _configure_all(pbg.StageConfigServiceStub(channel))
    await first.stop(grace=1)
    second = await start_app(
        db_path,
        fake_providers,
        ADMIN_SECRET_KEY="the-new-secret",
        ADMIN_SECRET_KEY_PREVIOUS=f"unrelated,{TEST_SECRET}",
    )
    try:
        assert second.service.get_active(StageType.POEM).api_key == STAGE_CASES[0][2]
    finally:
        await second.stop(grace=1)


# -- bad input ---------------------------------------------------------------------------

BAD_UPDATES = [
    ("unspecified stage", {"provider_kind": pb.PROVIDER_KIND_GEMINI}, "stage_type"),
    (
        "unknown stage",
        {"stage_type": 99, "provider_kind": pb.PROVIDER_KIND_GEMINI},
        "stage_type",
    ),
    ("unspecified provider", {"stage_type": pb.STAGE_TYPE_POEM}, "provider_kind"),
    (
        "unknown provider",
        {"stage_type": pb.STAGE_TYPE_POEM, "provider_kind": 42},
        "provider_kind",
    ),
    (
        "provider not allowed for the stage",
        {"stage_type": pb.STAGE_TYPE_VOICE, "provider_kind": pb.PROVIDER_KIND_OPENAI},
        "provider_kind",
    ),
    (
        "empty model",
        {
            "stage_type": pb.STAGE_TYPE_VOICE,
            "provider_kind": pb.PROVIDER_KIND_SPEECHKIT,
            "model": "",
        },
        "model",
    ),
    (
        "model over 256 characters",
        {
            "stage_type": pb.STAGE_TYPE_VOICE,
            "provider_kind": pb.PROVIDER_KIND_SPEECHKIT,
            "model": "m" * 257,
        },
        "model",
    ),
    (
        "key over 4 KB",
        {
            "stage_type": pb.STAGE_TYPE_VOICE,
            "provider_kind": pb.PROVIDER_KIND_SPEECHKIT,
            "api_key": "k" * 4097,
        },
        "api_key",
    ),
    (
        "key with a control character",
        {
            "stage_type": pb.STAGE_TYPE_VOICE,
            "provider_kind": pb.PROVIDER_KIND_SPEECHKIT,
            "api_key": "AQVN-line\nbreak",
        },
        "api_key",
    ),
    (
        "non-ASCII key",
        {
            "stage_type": pb.STAGE_TYPE_SONG,
            "provider_kind": pb.PROVIDER_KIND_SUNO,
            "api_key": "suno-ключ-¡",
        },
        "api_key",
    ),
    (
        "empty key",
        {
            "stage_type": pb.STAGE_TYPE_VOICE,
            "provider_kind": pb.PROVIDER_KIND_SPEECHKIT,
            "api_key": "",
        },
        "api_key",
    ),
    (
        "missing folder_id for YandexGPT",
        {
            "stage_type": pb.STAGE_TYPE_POEM,
            "provider_kind": pb.PROVIDER_KIND_YANDEX_GPT,
            "api_key": "AQVN-yandex-key",
        },
        "options.folder_id",
    ),
    (
        "malformed folder_id",
        {
            "stage_type": pb.STAGE_TYPE_POEM,
            "provider_kind": pb.PROVIDER_KIND_YANDEX_GPT,
            "api_key": "AQVN-yandex-key",
            "options": {"folder_id": "b1g folder/../x"},
        },
        "options.folder_id",
    ),
    (
        "unknown option",
        {
            "stage_type": pb.STAGE_TYPE_POEM,
            "provider_kind": pb.PROVIDER_KIND_GEMINI,
            "api_key": "AIza-key",
            "options": {"temperature": "0.7"},
        },
        "options.temperature",
    ),
    (
        "no key ever saved for the provider",
        {"stage_type": pb.STAGE_TYPE_SONG, "provider_kind": pb.PROVIDER_KIND_SUNO},
        "api_key",
    ),
    (
        "negative expected_revision",
        {
            "stage_type": pb.STAGE_TYPE_VOICE,
            "provider_kind": pb.PROVIDER_KIND_SPEECHKIT,
            "expected_revision": -1,
        },
        "expected_revision",
    ),
    (
        "model the provider does not offer",
        {
            "stage_type": pb.STAGE_TYPE_POEM,
            "provider_kind": pb.PROVIDER_KIND_OPENAI,
            "api_key": "sk-valid-openai-key",
            "model": "gpt-imaginary",
        },
        "model",
    ),
]


@pytest.mark.parametrize(("case", "fields", "field"), BAD_UPDATES, ids=[c[0] for c in BAD_UPDATES])
async def test_bad_update_is_invalid_argument_and_changes_nothing(
    stub: pbg.StageConfigServiceStub, case: str, fields: dict[str, object], field: str
) -> None:
    # A stored VOICE config makes "nothing changed" meaningful for updates of it.
    await stub.UpdateConfig(VOICE_UPDATE)
    before = await state_of(stub)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateConfig(pb.UpdateConfigRequest(**fields))  # type: ignore[arg-type]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
    assert bad_request_field(caught.value) == field
    assert field.split(".")[0] in (caught.value.details() or "")
    assert await state_of(stub) == before


async def test_invalid_model_error_names_available_models(
    stub: pbg.StageConfigServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateConfig(
            pb.UpdateConfigRequest(
                stage_type=pb.STAGE_TYPE_POEM,
                provider_kind=pb.PROVIDER_KIND_OPENAI,
                api_key="sk-valid-openai-key",
                model="gpt-imaginary",
            )
        )
    assert "gpt-4o" in (caught.value.details() or "")


@pytest.mark.parametrize(
    ("rpc", "request_message"),
    [
        ("GetActiveConfig", pb.GetActiveConfigRequest()),
        ("GetActiveConfig", pb.GetActiveConfigRequest(stage_type=17)),  # type: ignore[arg-type]
        ("ListModels", pb.ListModelsRequest()),
        ("RefreshModels", pb.RefreshModelsRequest(stage_type=17)),  # type: ignore[arg-type]
        ("GetConfigHistory", pb.GetConfigHistoryRequest(page_size=-1)),
        ("GetConfigHistory", pb.GetConfigHistoryRequest(page_token="not-a-token")),
        ("RollbackConfig", pb.RollbackConfigRequest(stage_type=pb.STAGE_TYPE_POEM)),
    ],
)
async def test_other_rpcs_reject_bad_fields(
    stub: pbg.StageConfigServiceStub, rpc: str, request_message: object
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(stub, rpc)(request_message)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_field(caught.value)


@pytest.mark.parametrize(
    ("rpc", "request_message"),
    [
        # GetActiveConfig: no row and no legacy fallback.
        ("GetActiveConfig", pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_SONG)),
        # ListModels: an unconfigured stage has no cached list.
        ("ListModels", pb.ListModelsRequest(stage_type=pb.STAGE_TYPE_CLIP)),
        # RollbackConfig: a revision that does not exist.
        (
            "RollbackConfig",
            pb.RollbackConfigRequest(stage_type=pb.STAGE_TYPE_POEM, to_revision=12),
        ),
    ],
)
async def test_what_does_not_exist_is_not_found(
    stub: pbg.StageConfigServiceStub, rpc: str, request_message: object
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(stub, rpc)(request_message)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


# -- key reuse ---------------------------------------------------------------------------


async def test_omitted_key_keeps_the_stored_key(stub: pbg.StageConfigServiceStub) -> None:
    await stub.UpdateConfig(
        pb.UpdateConfigRequest(
            stage_type=pb.STAGE_TYPE_POEM,
            provider_kind=pb.PROVIDER_KIND_GEMINI,
            api_key="AIza-first-key",
            model="gemini-2.5-flash",
        )
    )
    await stub.UpdateConfig(
        pb.UpdateConfigRequest(
            stage_type=pb.STAGE_TYPE_POEM,
            provider_kind=pb.PROVIDER_KIND_GEMINI,
            model="gemini-2.5-pro",
        )
    )
    active = await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_POEM))
    assert (active.config.api_key, active.config.model) == ("AIza-first-key", "gemini-2.5-pro")


async def test_provider_change_without_key_reuses_newest_key_of_that_provider(
    stub: pbg.StageConfigServiceStub, db_path: Path
) -> None:
    for key in ("sk-older-openai-key", "sk-newer-openai-key"):
        await stub.UpdateConfig(
            pb.UpdateConfigRequest(
                stage_type=pb.STAGE_TYPE_POEM, provider_kind=pb.PROVIDER_KIND_OPENAI, api_key=key
            )
        )
    await stub.UpdateConfig(
        pb.UpdateConfigRequest(
            stage_type=pb.STAGE_TYPE_POEM,
            provider_kind=pb.PROVIDER_KIND_GEMINI,
            api_key="AIza-gemini-key",
        )
    )
    await stub.UpdateConfig(
        pb.UpdateConfigRequest(stage_type=pb.STAGE_TYPE_POEM, provider_kind=pb.PROVIDER_KIND_OPENAI)
    )
    active = await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_POEM))
    assert active.config.provider_kind == pb.PROVIDER_KIND_OPENAI
    assert active.config.api_key == "sk-newer-openai-key"
    with sqlite3.connect(db_path) as conn:
        keys = conn.execute(
            "SELECT provider_kind, fingerprint FROM api_keys ORDER BY id"
        ).fetchall()
    # Every key entered is kept, once per entry; reusing one adds no row.
    assert [k[0] for k in keys] == ["OPENAI", "OPENAI", "GEMINI"]


async def test_yandex_folder_is_stored_in_options(stub: pbg.StageConfigServiceStub) -> None:
    await stub.UpdateConfig(
        pb.UpdateConfigRequest(
            stage_type=pb.STAGE_TYPE_POEM,
            provider_kind=pb.PROVIDER_KIND_YANDEX_GPT,
            api_key="AQVN-yandex-key-1234",
            options={"folder_id": "b1gabcdef0123456789"},
        )
    )
    active = await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_POEM))
    assert dict(active.config.options) == {"folder_id": "b1gabcdef0123456789"}


# -- legacy fallback ---------------------------------------------------------------------


async def test_fallback_from_legacy_settings(db_path: Path, fake_providers: FakeProviders) -> None:
    legacy = empty_legacy(
        OPENAI_API_KEY="sk-legacy-openai",
        YANDEX_GPT_API_KEY="AQVN-legacy-yandex",
        YANDEX_FOLDER_ID="b1gfolder",
        SUNO_API_KEY="suno-legacy",
        SUNO_MODEL="V4",
    )
    app = await start_app(db_path, fake_providers, legacy=legacy)
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            poem = (await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=1))).config
            # No Gemini key: OpenAI comes next in the POEM order.
            assert poem.source == pb.CONFIG_SOURCE_FALLBACK
            assert (poem.provider_kind, poem.api_key) == (
                pb.PROVIDER_KIND_OPENAI,
                "sk-legacy-openai",
            )
            song = (await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=3))).config
            assert (song.provider_kind, song.model, song.revision) == (
                pb.PROVIDER_KIND_SUNO,
                "V4",
                0,
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=4))
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            listing = await stub.ListConfigs(pb.ListConfigsRequest())
            sources = {s.stage_type: s.config.source for s in listing.stages}
            assert sources[pb.STAGE_TYPE_POEM] == pb.CONFIG_SOURCE_FALLBACK
            assert "sk-legacy-openai" not in str(listing)
            # A stored row wins over the fallback.
            await stub.UpdateConfig(
                pb.UpdateConfigRequest(
                    stage_type=1, provider_kind=pb.PROVIDER_KIND_GEMINI, api_key="AIza-stored"
                )
            )
            poem = (await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=1))).config
            assert (poem.source, poem.api_key) == (pb.CONFIG_SOURCE_DATABASE, "AIza-stored")
    finally:
        await app.stop(grace=1)


async def test_poem_fallback_prefers_gemini(db_path: Path, fake_providers: FakeProviders) -> None:
    legacy = empty_legacy(GEMINI_API_KEY="AIza-legacy", OPENAI_API_KEY="sk-legacy")
    app = await start_app(db_path, fake_providers, legacy=legacy)
    try:
        config = app.service.get_active(StageType.POEM)
        assert (config.provider_kind, config.model) == (ProviderKind.GEMINI, "gemini-2.5-flash")
    finally:
        await app.stop(grace=1)


# -- database trouble --------------------------------------------------------------------


def _rename_table(db_path: Path, old: str, new: str) -> None:
    # A second connection, as an operator's sqlite3 shell would be; run in a thread so
    # waiting for the server's write lock never blocks the server's own event loop.
    with sqlite3.connect(db_path, timeout=30) as conn:
        conn.execute(f"ALTER TABLE {old} RENAME TO {new}")


async def test_database_failure_is_unavailable_and_recovers(
    stub: pbg.StageConfigServiceStub, db_path: Path
) -> None:
    request = pb.UpdateConfigRequest(
        stage_type=pb.STAGE_TYPE_VOICE, provider_kind=pb.PROVIDER_KIND_SPEECHKIT, api_key="AQVN-k1"
    )
    await stub.UpdateConfig(request)
    request.api_key = "AQVN-k2"  # a real change: an identical one would write nothing
    await asyncio.to_thread(_rename_table, db_path, "revision_log", "revision_log_away")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateConfig(request)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "database is unavailable" in (caught.value.details() or "")
    assert "Traceback" not in (caught.value.details() or "")
    # Reads are served from memory meanwhile.
    active = await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_VOICE))
    assert active.config.revision == 1
    await asyncio.to_thread(_rename_table, db_path, "revision_log_away", "revision_log")
    again = await stub.UpdateConfig(request)
    assert again.config.revision == 2


# -- health and reflection ---------------------------------------------------------------


async def test_health_is_serving_and_reflection_lists_the_service(app: StageConfigApp) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with grpc.aio.insecure_channel(app.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = []
        async for response in responses:
            names = [s.name for s in response.list_services_response.service]
            break
    assert "stageconfig.v1.StageConfigService" in names
    assert "grpc.health.v1.Health" in names
