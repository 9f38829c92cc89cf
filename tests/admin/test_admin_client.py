"""AdminClient against a real in-process server: typed answers, masked keys, the error
tree (never grpc.RpcError). Its calls block, so they run in a thread while the server
runs in the test's event loop."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import AsyncIterator

import pytest

from stageconfig import (
    AdminClient,
    ChangeReason,
    ConfigSource,
    ConfigStatus,
    ConflictError,
    InvalidArgumentError,
    KeyRejectedError,
    NotFoundError,
    ProviderKind,
    StageType,
    UnavailableError,
)
from stageconfig.admin import ChangeEvent, SnapshotEvent, WatchEvent
from stageconfig_server.app import StageConfigApp
from tests.admin.conftest import GEMINI_KEY_A, OPENAI_KEY_B
from tests.fakes.provider_server import FakeProviders


@pytest.fixture
async def admin(app: StageConfigApp) -> AsyncIterator[AdminClient]:
    client = AdminClient(app.target, timeout=10)
    try:
        yield client
    finally:
        client.close()


async def test_admin_calls_return_frozen_types_with_masked_keys(admin: AdminClient) -> None:
    empty = await asyncio.to_thread(admin.list_configs)
    assert [v.stage_type for v in empty.stages] == list(StageType)
    poem = empty.stage(StageType.POEM)
    assert (poem.source, poem.config, poem.revision) == (ConfigSource.UNCONFIGURED, None, 0)
    assert poem.allowed_providers == (
        ProviderKind.YANDEX_GPT,
        ProviderKind.GEMINI,
        ProviderKind.OPENAI,
    )

    checked = await asyncio.to_thread(
        admin.update_config, "POEM", "GEMINI", api_key=GEMINI_KEY_A, validate_only=True
    )
    assert not checked.written
    assert "gemini-2.5-pro" in checked.models
    saved = await asyncio.to_thread(
        admin.update_config,
        StageType.POEM,
        ProviderKind.GEMINI,
        api_key=GEMINI_KEY_A,
        model="gemini-2.5-pro",
        expected_revision=0,
        comment="first",
    )
    assert saved.written
    assert (saved.config.revision, saved.config.status) == (1, ConfigStatus.ACTIVE)
    assert saved.config.api_key_masked
    assert saved.config.api_key == "AIza-…0001"
    with pytest.raises(dataclasses.FrozenInstanceError):
        saved.config.model = "x"  # type: ignore[misc]

    view = (await asyncio.to_thread(admin.list_configs)).stage("POEM")
    assert view.revision == 1
    assert "gemini-2.5-flash" in view.models
    models = await asyncio.to_thread(admin.list_models, StageType.POEM, refresh=True)
    assert models.selected_model == "gemini-2.5-pro"
    assert models.updated_at is not None

    await asyncio.to_thread(
        admin.update_config, StageType.POEM, ProviderKind.OPENAI, api_key=OPENAI_KEY_B
    )
    results = await asyncio.to_thread(admin.refresh_models)
    assert [r.stage_type for r in results] == [StageType.POEM]
    restored = await asyncio.to_thread(admin.rollback, StageType.POEM, 1)
    assert restored.provider_kind is ProviderKind.GEMINI
    assert restored.api_key == "AIza-…0001"

    entries = await asyncio.to_thread(lambda: list(admin.iter_history(StageType.POEM)))
    assert entries[0].reason is ChangeReason.ROLLBACK
    assert entries[-1].comment == "first"
    assert [e.revision for e in entries] == sorted((e.revision for e in entries), reverse=True)
    page = await asyncio.to_thread(admin.history, page_size=1)
    assert len(page.entries) == 1
    assert page.next_page_token
    rest = await asyncio.to_thread(admin.history, page_size=100, page_token=page.next_page_token)
    assert [e.revision for e in (*page.entries, *rest.entries)] == [e.revision for e in entries]
    assert not rest.next_page_token


async def test_errors_are_typed_and_carry_field_and_revision(
    admin: AdminClient, fake_providers: FakeProviders
) -> None:
    with pytest.raises(NotFoundError):
        await asyncio.to_thread(admin.list_models, StageType.SONG)
    with pytest.raises(InvalidArgumentError) as invalid:
        await asyncio.to_thread(admin.update_config, "POEM", "SUNO", api_key="suno-key-000000001")
    assert invalid.value.field == "provider_kind"
    with pytest.raises(InvalidArgumentError) as invalid:
        await asyncio.to_thread(
            admin.update_config, "POEM", "GEMINI", api_key=GEMINI_KEY_A, model="nope"
        )
    assert invalid.value.field == "model"
    with pytest.raises(InvalidArgumentError) as invalid:
        await asyncio.to_thread(admin.history, page_token="garbage")
    assert invalid.value.field == "page_token"

    fake_providers.reject_key("AIza-rejected-000000000000")
    with pytest.raises(KeyRejectedError) as rejected:
        await asyncio.to_thread(
            admin.update_config, "POEM", "GEMINI", api_key="AIza-rejected-000000000000"
        )
    assert "AIza-rejected-000000000000" not in str(rejected.value)

    await asyncio.to_thread(admin.update_config, "POEM", "GEMINI", api_key=GEMINI_KEY_A)
    with pytest.raises(ConflictError) as conflict:
        await asyncio.to_thread(
            admin.update_config, "POEM", "GEMINI", model="gemini-2.5-pro", expected_revision=0
        )
    assert conflict.value.current_revision == 1


def test_an_unreachable_server_is_unavailable_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with AdminClient(f"127.0.0.1:{port}", timeout=5) as admin, pytest.raises(UnavailableError):
        admin.list_configs()


async def test_watch_yields_events_with_masked_keys_and_ends_on_cancel(
    admin: AdminClient,
) -> None:
    # Without tokens every caller may read plaintext keys; the admin client still masks.
    await asyncio.to_thread(admin.update_config, "POEM", "GEMINI", api_key=GEMINI_KEY_A)
    events: list[WatchEvent] = []
    got_snapshot, got_change = threading.Event(), threading.Event()
    stream = admin.watch([StageType.POEM], client_id="admin-test")

    def consume() -> None:
        for event in stream:
            events.append(event)
            if isinstance(event, SnapshotEvent):
                got_snapshot.set()
            if isinstance(event, ChangeEvent):
                got_change.set()

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    try:
        assert await asyncio.to_thread(got_snapshot.wait, 10)
        watchers = await asyncio.to_thread(admin.list_watchers)
        assert [w.client_id for w in watchers.watchers] == ["admin-test"]
        assert watchers.watchers[0].stage_types == (StageType.POEM,)
        await asyncio.to_thread(
            admin.update_config, "POEM", "OPENAI", api_key=OPENAI_KEY_B, model="gpt-4o"
        )
        assert await asyncio.to_thread(got_change.wait, 10)
    finally:
        stream.cancel()
    await asyncio.to_thread(reader.join, 10)
    assert not reader.is_alive()  # cancel ends the iteration without an exception

    snapshot, change = events[0], next(e for e in events if isinstance(e, ChangeEvent))
    assert isinstance(snapshot, SnapshotEvent)
    assert snapshot.configs[0].api_key == "AIza-…0001"
    assert change.config.api_key == "sk-…0002"
    assert change.config.api_key_masked
    assert change.reason is ChangeReason.ADMIN_UPDATE
