"""The repository against both backends: SQLite (embedded) and PostgreSQL (replicas)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from stageconfig_server.crypto import KeyCipher
from stageconfig_server.db.engine import create_engine
from stageconfig_server.db.migrate import pending_migrations, upgrade_to_head
from stageconfig_server.db.records import ConfigWrite, StoredRoute
from stageconfig_server.db.repository import Repository
from stageconfig_server.domain import ChangeReason, ConfigStatus, ProviderKind, StageType
from stageconfig_server.errors import RevisionConflict
from stageconfig_server.rollout_types import RolloutEnd, RolloutSpec, RolloutState
from tests.support.postgres import temporary_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def repository(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Repository]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'repo.db'}")
        await upgrade_to_head(engine)
        try:
            yield Repository(engine)
        finally:
            await engine.dispose()
        return
    async with temporary_database() as url:
        engine = create_engine(url)
        await upgrade_to_head(engine)
        try:
            yield Repository(engine)
        finally:
            await engine.dispose()


CIPHER = KeyCipher("repository-test-secret")


def a_write(
    stage: StageType = StageType.POEM,
    provider: ProviderKind = ProviderKind.OPENAI,
    key: str = "sk-repo-key-1",
    model: str = "gpt-4o",
    *,
    new_key: bool = True,
    key_id: int | None = None,
) -> ConfigWrite:
    return ConfigWrite(
        stage_type=stage,
        provider_kind=provider,
        api_key_encrypted=CIPHER.encrypt_key(key),
        api_key_fingerprint=key[-4:],
        model=model,
        models_cache=("gpt-4o", "gpt-4o-mini"),
        models_cache_updated_at=None,
        status=ConfigStatus.ACTIVE,
        status_cause=None,
        status_reason="",
        options={},
        actor="tester",
        reason=ChangeReason.ADMIN_UPDATE,
        new_key=new_key,
        api_key_id=key_id,
    )


async def test_migrations_are_complete(repository: Repository) -> None:
    assert not await pending_migrations(repository.engine)


async def test_write_read_and_log(repository: Repository) -> None:
    stored, entry = await repository.write_config(a_write())
    assert (stored.revision, entry.revision) == (1, 1)
    assert stored.api_key_id is not None
    again = await repository.get(StageType.POEM)
    assert again is not None
    assert CIPHER.decrypt_key(again.api_key_encrypted) == "sk-repo-key-1"
    assert again.models_cache == ("gpt-4o", "gpt-4o-mini")
    second, _ = await repository.write_config(a_write(model="gpt-4o-mini", stage=StageType.POEM))
    assert second.revision == 2
    assert await repository.head_revision() == 2
    log = await repository.log_since(0)
    assert [e.revision for e in log] == [1, 2]
    assert {d.field for d in log[1].diff} == {"model"}  # same key: same fingerprint
    assert CIPHER.decrypt_key(log[0].state.api_key_encrypted) == "sk-repo-key-1"
    assert [e.revision for e in await repository.log_since(0, upto=1)] == [1]


async def test_expected_revision_is_checked_in_the_transaction(repository: Repository) -> None:
    await repository.write_config(a_write(), expected_revision=0)
    with pytest.raises(RevisionConflict) as caught:
        await repository.write_config(a_write(model="gpt-4o-mini"), expected_revision=0)
    assert caught.value.current_revision == 1
    assert await repository.head_revision() == 1


async def test_concurrent_writers_get_distinct_ordered_revisions(repository: Repository) -> None:
    writes = [a_write(stage=stage) for stage in StageType for _ in range(3)]
    results = await asyncio.gather(*(repository.write_config(w) for w in writes))
    revisions = sorted(entry.revision for _stored, entry in results)
    assert revisions == list(range(1, len(writes) + 1))
    assert [e.revision for e in await repository.log_since(0)] == revisions


async def test_history_pages_newest_first(repository: Repository) -> None:
    for model in ("a1", "a2", "a3"):
        await repository.write_config(a_write(model=model))
    await repository.write_config(a_write(stage=StageType.CLIP, provider=ProviderKind.PIKA))
    page = await repository.history(StageType.POEM, None, 2)
    assert [e.revision for e in page] == [3, 2]
    rest = await repository.history(StageType.POEM, 2, 2)
    assert [e.revision for e in rest] == [1]
    assert [e.revision for e in await repository.history(None, None, 10)] == [4, 3, 2, 1]


async def test_newest_key_and_key_reuse(repository: Repository) -> None:
    _stored, first = await repository.write_config(a_write(key="sk-first-key"))
    await repository.write_config(a_write(key="sk-second-key"))
    newest = await repository.newest_key(ProviderKind.OPENAI)
    assert newest is not None
    assert CIPHER.decrypt_key(newest.api_key_encrypted) == "sk-second-key"
    reused, _ = await repository.write_config(
        a_write(key="sk-first-key", new_key=False, key_id=first.state.api_key_id)
    )
    assert reused.api_key_id == first.state.api_key_id
    assert len(await repository.list_keys()) == 2
    assert await repository.newest_key(ProviderKind.GEMINI) is None


async def test_job_run_is_claimed_once_per_period(repository: Repository) -> None:
    claims = await asyncio.gather(
        *(repository.claim_job_run("model_sync", "2026-11-27") for _ in range(4))
    )
    assert sorted(claims) == [False, False, False, True]
    await repository.finish_job_run("model_sync", "2026-11-27", "POEM=ACTIVE")
    assert await repository.last_job_finish("model_sync") is not None
    assert await repository.claim_job_run("model_sync", "2026-11-28")


async def test_reencrypt_rotates_every_ciphertext(repository: Repository) -> None:
    await repository.write_config(a_write(key="sk-rotate-me"))
    await repository.get_or_create_canary(CIPHER.make_canary)
    rotated = KeyCipher("the-next-secret", ["repository-test-secret"])
    count = await repository.reencrypt(rotated.rotate)
    assert count == 3  # the config row, its api_keys row, the canary
    only_new = KeyCipher("the-next-secret")
    stored = await repository.get(StageType.POEM)
    assert stored is not None
    assert only_new.decrypt_key(stored.api_key_encrypted) == "sk-rotate-me"
    canary, created = await repository.get_or_create_canary(only_new.make_canary)
    assert not created
    only_new.check_canary(canary)


async def test_reencrypt_covers_a_rollout_candidates_keys(repository: Repository) -> None:
    # A stage whose key predates api_keys (no id): a rollout keeping that key holds its
    # ciphertext inline in the candidate; the candidate's route key is an api_keys row.
    await repository.write_config(a_write(key="sk-legacy-key", new_key=False))
    route = StoredRoute(
        provider_kind=ProviderKind.YANDEX_GPT,
        api_key_encrypted=CIPHER.encrypt_key("AQVN-candidate-route"),
        api_key_id=None,
        api_key_fingerprint="oute",
        model="yandexgpt/latest",
        options={"folder_id": "b1g"},
        status=ConfigStatus.ACTIVE,
        status_cause=None,
        status_reason="",
        models_cache=("yandexgpt/latest",),
    )
    candidate = a_write(key="sk-legacy-key", model="gpt-4o-mini", new_key=False)
    await repository.start_rollout(
        replace(candidate, fallbacks=(route,)), None, RolloutSpec(client_ids=("c",))
    )
    rotated = KeyCipher("the-next-secret", ["repository-test-secret"])
    # The row's and the candidate's inline keys, the route's api_keys row.
    assert await repository.reencrypt(rotated.rotate) == 3
    only_new = KeyCipher("the-next-secret")
    (running,) = await repository.running_rollouts()
    assert only_new.decrypt_key(running.candidate.api_key_encrypted) == "sk-legacy-key"
    (kept,) = running.candidate.fallbacks
    assert only_new.decrypt_key(kept.api_key_encrypted) == "AQVN-candidate-route"
    assert kept.models_cache == ("yandexgpt/latest",)
    _, entry = await repository.end_rollout(
        RolloutEnd(StageType.POEM, RolloutState.PROMOTED, actor="tester")
    )
    promoted = await repository.get(StageType.POEM)
    assert promoted is not None
    assert entry.state.fallbacks[0].api_key_id == kept.api_key_id
    assert only_new.decrypt_key(promoted.api_key_encrypted) == "sk-legacy-key"
    assert only_new.decrypt_key(promoted.fallbacks[0].api_key_encrypted) == "AQVN-candidate-route"
    assert promoted.fallbacks[0].models_cache == ("yandexgpt/latest",)


async def test_touch_cache_needs_the_expected_revision(repository: Repository) -> None:
    stored, _ = await repository.write_config(a_write())
    assert await repository.touch_models_cache(StageType.POEM, stored.updated_at, 1)
    assert not await repository.touch_models_cache(StageType.POEM, stored.updated_at, 7)
