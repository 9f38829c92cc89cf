"""The service layer's rules, without gRPC: a real ConfigService on a real SQLite file,
talking to the real FakeProviders HTTP server. No grpc server is booted here; what the
transport adds (status codes, masking) is tested in test_core_rpcs.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stageconfig_server.admin_events import ModelReplaced
from stageconfig_server.crypto import KeyCipher
from stageconfig_server.db.engine import create_engine
from stageconfig_server.db.migrate import upgrade_to_head
from stageconfig_server.db.repository import Repository
from stageconfig_server.domain import (
    ALLOWED_PROVIDERS,
    ChangeReason,
    ConfigSource,
    ConfigStatus,
    HistoryEntry,
    ProviderKind,
    StageConfig,
    StageType,
    StatusCause,
)
from stageconfig_server.errors import InvalidArgument, KeyRejected, NotFound, RevisionConflict
from stageconfig_server.providers.registry import build_adapters
from stageconfig_server.service import (
    SYSTEM_ACTOR,
    ConfigChange,
    ConfigService,
    UpdateRequest,
)
from tests.fakes.provider_server import FakeProviders
from tests.support.servers import empty_legacy

KEY_A = "sk-service-key-aaaa-1111"
KEY_B = "sk-service-key-bbbb-2222"
ADMIN = "admin@test"


class CountingCipher(KeyCipher):
    """A real cipher that counts decryptions (the view must not decrypt what it holds)."""

    decryptions = 0

    def decrypt_key(self, encrypted_text: str) -> str:
        self.decryptions += 1
        return super().decrypt_key(encrypted_text)


@dataclass
class RecordedEvents:
    """Admin events, kept in a list (the real sink logs and POSTs them)."""

    replaced: list[ModelReplaced] = field(default_factory=list)

    async def model_replaced(self, event: ModelReplaced) -> None:
        self.replaced.append(event)

    async def rollout(self, event: object) -> None:
        """Rollout events are not this module's subject (tests/server/test_rollouts.py)."""


class StepClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Parts:
    """The service and the real collaborators a test inspects."""

    service: ConfigService
    repository: Repository
    cipher: CountingCipher
    events: RecordedEvents
    clock: StepClock
    changes: list[ConfigChange]


@pytest.fixture
async def parts(tmp_path: Path, fake_providers: FakeProviders) -> AsyncIterator[Parts]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'service.db'}")
    await upgrade_to_head(engine)
    repository = Repository(engine)
    cipher = CountingCipher("service-test-secret")
    events, clock = RecordedEvents(), StepClock()
    service = ConfigService(
        repository,
        cipher,
        build_adapters(fake_providers.base_urls(), 3.0),
        empty_legacy(),
        events=events,
        provider_timeout_seconds=3.0,
        clock=clock,
    )
    await service.load()
    changes: list[ConfigChange] = []
    service.add_listener(changes.append)
    try:
        yield Parts(service, repository, cipher, events, clock, changes)
    finally:
        await engine.dispose()


def poem(
    key: str | None = KEY_A,
    model: str | None = "gpt-4o",
    *,
    expected_revision: int | None = None,
    validate_only: bool = False,
) -> UpdateRequest:
    return UpdateRequest(
        StageType.POEM,
        ProviderKind.OPENAI,
        api_key=key,
        model=model,
        expected_revision=expected_revision,
        validate_only=validate_only,
    )


FORBIDDEN = [
    (stage, provider)
    for stage in StageType
    for provider in ProviderKind
    if provider not in ALLOWED_PROVIDERS[stage]
]


@pytest.mark.parametrize(("stage", "provider"), FORBIDDEN)
async def test_the_matrix_refuses_other_providers_and_writes_nothing(
    parts: Parts, stage: StageType, provider: ProviderKind
) -> None:
    request = UpdateRequest(stage, provider, api_key=KEY_A, model="m")
    with pytest.raises(InvalidArgument) as caught:
        await parts.service.update(request, ADMIN)
    assert caught.value.field == "provider_kind"
    assert await parts.repository.head_revision() == 0
    assert parts.changes == []


async def test_update_stores_verifies_and_serves_the_plaintext(parts: Parts) -> None:
    result = await parts.service.update(poem(), ADMIN)
    assert result.written
    assert (result.config.revision, result.config.model) == (1, "gpt-4o")
    assert result.models == ("o3-mini", "gpt-4o-mini", "gpt-4o")  # newest first
    active = parts.service.get_active(StageType.POEM)
    assert (active.api_key, active.source, active.status) == (
        KEY_A,
        ConfigSource.DATABASE,
        ConfigStatus.ACTIVE,
    )
    assert [c.revision for c in parts.changes] == [1]
    stored = await parts.repository.get(StageType.POEM)
    assert stored is not None
    assert KEY_A not in stored.api_key_encrypted


async def test_stale_expected_revision_is_a_conflict_and_writes_nothing(parts: Parts) -> None:
    await parts.service.update(poem(expected_revision=0), ADMIN)
    with pytest.raises(RevisionConflict) as caught:
        await parts.service.update(poem(model="o3-mini", expected_revision=0), ADMIN)
    assert caught.value.current_revision == 1
    with pytest.raises(RevisionConflict):
        await parts.service.update(poem(model="o3-mini", expected_revision=7), ADMIN)
    assert await parts.repository.head_revision() == 1
    assert parts.service.get_active(StageType.POEM).model == "gpt-4o"
    second = await parts.service.update(poem(model="o3-mini", expected_revision=1), ADMIN)
    assert second.config.revision == 2


async def test_omitted_key_reuses_the_stored_one_without_decrypting(parts: Parts) -> None:
    await parts.service.update(poem(), ADMIN)
    await parts.service.update(poem(key=None, model="o3-mini"), ADMIN)
    await parts.service.refresh(StageType.POEM)
    active = parts.service.get_active(StageType.POEM)
    assert (active.api_key, active.model) == (KEY_A, "o3-mini")
    assert len(await parts.repository.list_keys()) == 1  # reused, not saved again
    # The view holds the plaintext with its ciphertext and key id: neither the update
    # nor the reuse nor the refresh had to decrypt anything.
    assert parts.cipher.decryptions == 0


async def test_a_provider_change_without_key_takes_that_providers_newest_key(
    parts: Parts,
) -> None:
    await parts.service.update(poem(), ADMIN)
    gemini = UpdateRequest(StageType.POEM, ProviderKind.GEMINI, api_key="AIza-gemini-key-1234")
    await parts.service.update(gemini, ADMIN)
    back = await parts.service.update(poem(key=None, model=None), ADMIN)
    assert back.config.api_key == KEY_A
    assert back.config.model == "o3-mini"  # the provider's first: the stage changed
    with pytest.raises(InvalidArgument) as caught:
        await parts.service.update(UpdateRequest(StageType.SONG, ProviderKind.SUNO), ADMIN)
    assert caught.value.field == "api_key"


async def test_validate_only_answers_and_writes_nothing(parts: Parts) -> None:
    result = await parts.service.update(poem(validate_only=True), ADMIN)
    assert not result.written
    assert (result.config.model, result.config.revision) == ("gpt-4o", 0)
    assert await parts.repository.head_revision() == 0
    assert await parts.repository.list_keys() == []
    assert (await parts.service.history(None, 0, "")).entries == ()
    assert parts.changes == []
    with pytest.raises(NotFound):
        parts.service.get_active(StageType.POEM)


async def test_a_model_the_provider_lacks_is_refused_with_the_offered_ones(parts: Parts) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await parts.service.update(poem(model="gpt-2"), ADMIN)
    assert caught.value.field == "model"
    assert "available: o3-mini, gpt-4o-mini, gpt-4o" in caught.value.message
    assert await parts.repository.head_revision() == 0


async def test_a_rejected_key_changes_nothing_and_is_not_repeated(
    parts: Parts, fake_providers: FakeProviders
) -> None:
    await parts.service.update(poem(), ADMIN)
    fake_providers.reject_key(KEY_B)
    with pytest.raises(KeyRejected) as caught:
        await parts.service.update(poem(key=KEY_B), ADMIN)
    assert KEY_B not in caught.value.message
    assert caught.value.message.startswith("OpenAI rejected the API key (HTTP 401: ")
    assert parts.service.get_active(StageType.POEM).api_key == KEY_A
    assert await parts.repository.head_revision() == 1


async def test_rollback_restores_key_and_model_as_a_new_revision(parts: Parts) -> None:
    await parts.service.update(poem(), ADMIN)
    await parts.service.update(poem(key=KEY_B, model="o3-mini"), ADMIN)
    restored = await parts.service.rollback(StageType.POEM, 1, 2, ADMIN)
    assert (restored.revision, restored.api_key, restored.model) == (3, KEY_A, "gpt-4o")
    assert parts.service.get_active(StageType.POEM) is restored
    newest = (await parts.service.history(StageType.POEM, 1, "")).entries[0]
    assert (newest.revision, newest.reason) == (3, ChangeReason.ROLLBACK)
    assert newest.comment == "rollback to revision 1"
    with pytest.raises(RevisionConflict):
        await parts.service.rollback(StageType.POEM, 1, 2, ADMIN)
    with pytest.raises(NotFound):
        await parts.service.rollback(StageType.POEM, 99, None, ADMIN)
    with pytest.raises(NotFound):
        await parts.service.rollback(StageType.VOICE, 1, None, ADMIN)
    with pytest.raises(InvalidArgument):
        await parts.service.rollback(StageType.POEM, 0, None, ADMIN)


async def test_history_pages_newest_first_without_keys(parts: Parts) -> None:
    for model in ("gpt-4o", "gpt-4o-mini", "o3-mini", "gpt-4o", "gpt-4o-mini"):
        await parts.service.update(poem(model=model), ADMIN)
    pages, token = [], ""
    while True:
        page = await parts.service.history(StageType.POEM, 2, token)
        pages.append([e.revision for e in page.entries])
        token = page.next_page_token
        if not token:
            break
    assert pages == [[5, 4], [3, 2], [1]]
    entry = (await parts.service.history(None, 1, "")).entries[0]
    assert type(entry) is HistoryEntry
    assert (entry.actor, entry.reason) == (ADMIN, ChangeReason.ADMIN_UPDATE)
    assert {d.field for d in entry.diff} == {"model"}
    shown = repr(await parts.service.history(None, 10, ""))
    assert KEY_A not in shown
    assert "gAAAA" not in shown  # no Fernet ciphertext either
    with pytest.raises(InvalidArgument) as caught:
        await parts.service.history(None, 2, "not-a-token")
    assert caught.value.field == "page_token"
    with pytest.raises(InvalidArgument):
        await parts.service.history(None, -1, "")


async def test_refresh_replaces_a_vanished_model(
    parts: Parts, fake_providers: FakeProviders
) -> None:
    await parts.service.update(poem(model="o3-mini"), ADMIN)
    fake_providers.set_models(ProviderKind.OPENAI, ["gpt-4o", "gpt-4o-mini"])
    [outcome] = await parts.service.refresh(StageType.POEM)
    assert (outcome.replaced_model, outcome.selected_model) == ("o3-mini", "gpt-4o-mini")
    assert (outcome.status, outcome.revision) == (ConfigStatus.WARNING, 2)
    active = parts.service.get_active(StageType.POEM)
    assert (active.model, active.status_cause) == ("gpt-4o-mini", StatusCause.MODEL_REPLACED)
    assert active.api_key == KEY_A
    assert [(c.revision, c.reason) for c in parts.changes][-1] == (2, ChangeReason.MODEL_REPLACED)
    [event] = parts.events.replaced
    assert (event.old_model, event.new_model, event.revision) == ("o3-mini", "gpt-4o-mini", 2)
    entry = (await parts.service.history(StageType.POEM, 1, "")).entries[0]
    assert entry.actor == SYSTEM_ACTOR
    # The warning stays until an admin saves the stage, however often the sync runs.
    [again] = await parts.service.refresh()
    assert (again.status, again.revision) == (ConfigStatus.WARNING, 2)


async def test_refresh_finding_nothing_new_moves_only_the_cache_time(parts: Parts) -> None:
    await parts.service.update(poem(), ADMIN)
    first = parts.service.get_active(StageType.POEM)
    parts.clock.now += timedelta(hours=24)
    [outcome] = await parts.service.refresh()
    assert outcome.revision == 1
    touched = parts.service.get_active(StageType.POEM)
    assert touched.models_cache_updated_at == parts.clock.now
    assert touched is not first  # a new object: caches keyed on identity see the change
    assert [c.revision for c in parts.changes] == [1]
    stored = await parts.repository.get(StageType.POEM)
    assert stored is not None
    assert stored.models_cache_updated_at == parts.clock.now


async def test_a_failed_refresh_keeps_the_last_good_cache(
    parts: Parts, fake_providers: FakeProviders
) -> None:
    await parts.service.update(poem(model="o3-mini"), ADMIN)
    fake_providers.set_failure(ProviderKind.OPENAI, "server_error")
    [outcome] = await parts.service.refresh(StageType.POEM)
    assert outcome.status is ConfigStatus.ERROR
    assert set(outcome.models) == {"gpt-4o", "gpt-4o-mini", "o3-mini"}
    assert parts.service.get_active(StageType.POEM).model == "o3-mini"
    with pytest.raises(NotFound):
        await parts.service.refresh(StageType.CLIP)


async def test_import_stores_once_and_replaces_an_unknown_model(parts: Parts) -> None:
    legacy = StageConfig(
        stage_type=StageType.POEM,
        provider_kind=ProviderKind.OPENAI,
        api_key=KEY_A,
        model="gpt-legacy",
        revision=0,
        status=ConfigStatus.ACTIVE,
        source=ConfigSource.FALLBACK,
    )
    imported = await parts.service.import_config(legacy, "import-env")
    assert imported is not None
    assert (imported.model, imported.status) == ("o3-mini", ConfigStatus.WARNING)
    assert await parts.service.import_config(legacy, "import-env") is None
    assert await parts.repository.head_revision() == 1


async def test_a_restarted_service_serves_what_was_stored(
    parts: Parts, fake_providers: FakeProviders
) -> None:
    await parts.service.update(poem(), ADMIN)
    again = ConfigService(
        parts.repository,
        KeyCipher("service-test-secret"),
        build_adapters(fake_providers.base_urls(), 3.0),
        empty_legacy(),
        events=RecordedEvents(),
    )
    await again.load()
    assert again.get_active(StageType.POEM).api_key == KEY_A
    assert again.head_revision == 1
    await parts.service.update(poem(model="o3-mini"), ADMIN)
    assert await again.catch_up() == 1
    assert again.get_active(StageType.POEM).model == "o3-mini"
