"""Rollouts × fallback routes (issues 15 and 16): a rollout's candidate carries its own
routes end to end. A real server on port 0, a real SQLite file, the real fake providers:
the candidate's routes are verified and their keys stored encrypted in ``api_keys``
(never in the rollouts row), the cohort gets them in plaintext, admins masked, a
promote gives them to everyone, an abort gives the cohort the stable routes back, and
a restart or a key rotation mid-rollout keeps them."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.maintenance import rotate_keys
from tests.fakes.provider_server import FakeProviders
from tests.server.test_fallbacks import (
    ALL_KEYS,
    OPENAI_KEY,
    YANDEX_KEY,
    database_text,
    openai_route,
    poem_request,
    yandex_route,
)
from tests.support.servers import server_env, settings_for, start_app

Stub = pbg.StageConfigServiceStub
Stream = grpc.aio.UnaryStreamCall[pb.WatchConfigRequest, pb.WatchConfigResponse]
POEM = pb.STAGE_TYPE_POEM
CANARY = "canary-1"
OTHER = "stable-1"
CANDIDATE_OPENAI_KEY = "sk-FBLEAK-candidate-0007"
KEYS = (*ALL_KEYS, CANDIDATE_OPENAI_KEY)


def cohort(*client_ids: str) -> pb.RolloutSpec:
    return pb.RolloutSpec(client_ids=list(client_ids or (CANARY,)))


async def stable_poem(stub: Stub) -> int:
    """POEM with one OpenAI route; returns its revision."""
    return int((await stub.UpdateConfig(poem_request(openai_route()))).config.revision)


async def start_with_routes(stub: Stub) -> pb.UpdateConfigResponse:
    """A rollout of POEM whose candidate has a Yandex route and a new OpenAI key."""
    answer: pb.UpdateConfigResponse = await stub.UpdateConfig(
        poem_request(
            yandex_route(),
            openai_route(api_key=CANDIDATE_OPENAI_KEY, model="gpt-4o"),
            rollout=cohort(),
        )
    )
    return answer


async def active(stub: Stub, client_id: str = "") -> pb.StageConfig:
    request = pb.GetActiveConfigRequest(stage_type=POEM, client_id=client_id)
    return (await stub.GetActiveConfig(request)).config


def route_keys(config: pb.StageConfig) -> list[str]:
    return [r.api_key for r in config.fallbacks]


def watch(stub: Stub, client_id: str, resume: int | None = None) -> Stream:
    request = pb.WatchConfigRequest(stage_types=[POEM], client_id=client_id)
    if resume is not None:
        request.resume_revision = resume
    return stub.WatchConfig(request)


async def changes_until_head(call: Stream, head: int) -> list[pb.Change]:
    """Every change the stream carries until a heartbeat at or past ``head``."""
    changes: list[pb.Change] = []
    while True:
        message = await asyncio.wait_for(call.read(), 10)
        assert message is not grpc.aio.EOF, "the stream ended"
        assert isinstance(message, pb.WatchConfigResponse)
        kind = message.WhichOneof("event")
        if kind == "heartbeat" and message.heartbeat.head_revision >= head:
            return changes
        if kind == "change":
            changes.append(message.change)


async def first_snapshot(call: Stream) -> pb.Snapshot:
    message = await asyncio.wait_for(call.read(), 10)
    assert isinstance(message, pb.WatchConfigResponse)
    assert message.WhichOneof("event") == "snapshot", message
    return message.snapshot


def rollout_candidates(db_path: Path) -> list[dict[str, object]]:
    with sqlite3.connect(db_path) as conn:
        return [json.loads(c) for (c,) in conn.execute("SELECT candidate FROM rollouts")]


def stored_routes(db_path: Path) -> list[dict[str, object]]:
    with sqlite3.connect(db_path) as conn:
        (routes,) = conn.execute(
            "SELECT fallbacks FROM provider_configs WHERE stage_type = 'POEM'"
        ).fetchone()
    result: list[dict[str, object]] = json.loads(routes)
    return result


def assert_no_plaintext(texts: Sequence[str]) -> None:
    leaked = [key for key in KEYS for text in texts if key in text]
    assert leaked == []


@asynccontextmanager
async def serving(db_path: Path, fake: FakeProviders, secret: str) -> AsyncIterator[Stub]:
    """A server on ``db_path`` with ``secret`` as its only key secret, and a stub."""
    app = await start_app(db_path, fake, ADMIN_SECRET_KEY=secret)
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            yield pbg.StageConfigServiceStub(channel)
    finally:
        await app.stop(grace=1)


async def test_the_cohort_gets_the_candidate_routes_admins_see_them_masked_and_promote_gives_them_to_all(  # noqa: E501
    stub: Stub, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    stable_revision = await stable_poem(stub)
    canary, other = watch(stub, CANARY), watch(stub, OTHER)
    for call in (canary, other):
        (config,) = (await first_snapshot(call)).configs
        assert route_keys(config) == [OPENAI_KEY]

    started = await start_with_routes(stub)
    candidate = started.config.revision
    assert started.written
    assert started.rollout.state == pb.ROLLOUT_STATE_RUNNING
    # The answer and the rollout's candidate: routes verified, keys masked.
    for shown in (started.config, started.rollout.candidate):
        assert [(r.provider_kind, r.model) for r in shown.fallbacks] == [
            (pb.PROVIDER_KIND_YANDEX_GPT, "yandexgpt/latest"),
            (pb.PROVIDER_KIND_OPENAI, "gpt-4o"),
        ]
        assert all(r.api_key_masked and r.api_key_fingerprint for r in shown.fallbacks)
        assert all(r.status == pb.CONFIG_STATUS_ACTIVE for r in shown.fallbacks)
        assert_no_plaintext([shown.SerializeToString().decode("latin-1")])

    # ListConfigs: the stage's config keeps the stable route, the candidate has its own.
    listed = next(
        v for v in (await stub.ListConfigs(pb.ListConfigsRequest())).stages if v.stage_type == POEM
    )
    assert [r.model for r in listed.config.fallbacks] == ["gpt-4o-mini"]
    assert [r.model for r in listed.rollout.candidate.fallbacks] == ["yandexgpt/latest", "gpt-4o"]
    assert all(r.api_key_masked for r in listed.rollout.candidate.fallbacks)
    assert_no_plaintext([listed.SerializeToString().decode("latin-1")])

    # Workers: the cohort gets the candidate's routes in plaintext, the others the stable.
    assert route_keys(await active(stub, CANARY)) == [YANDEX_KEY, CANDIDATE_OPENAI_KEY]
    assert route_keys(await active(stub, OTHER)) == [OPENAI_KEY]
    (change,) = await changes_until_head(canary, candidate)
    assert change.reason == pb.CHANGE_REASON_ROLLOUT_STARTED
    assert route_keys(change.config) == [YANDEX_KEY, CANDIDATE_OPENAI_KEY]
    assert await changes_until_head(other, candidate) == []

    # Resume per side: the cohort's watcher resuming at the stable revision gets the
    # candidate with its routes; the other side nothing.
    resumed = await changes_until_head(watch(stub, CANARY, stable_revision), candidate)
    assert [route_keys(c.config) for c in resumed] == [[YANDEX_KEY, CANDIDATE_OPENAI_KEY]]
    assert await changes_until_head(watch(stub, OTHER, stable_revision), candidate) == []

    # On disk: the candidate names its route keys by api_keys id, no ciphertext, no
    # plaintext; the new keys are rows of api_keys; nothing anywhere is plaintext.
    (stored_candidate,) = rollout_candidates(db_path)
    routes = stored_candidate["fallbacks"]
    assert isinstance(routes, list)
    assert all(isinstance(r["api_key_id"], int) for r in routes)
    assert not any("api_key_encrypted" in r for r in routes)
    assert all(r["models_cache"] for r in routes)  # a promote stores the lists
    with sqlite3.connect(db_path) as conn:
        fingerprints = {f for (f,) in conn.execute("SELECT fingerprint FROM api_keys")}
    assert {r["fingerprint"] for r in routes} <= fingerprints
    assert_no_plaintext([database_text(db_path)])

    promoted = await stub.PromoteRollout(
        pb.PromoteRolloutRequest(stage_type=POEM, expected_revision=candidate)
    )
    end = promoted.config.revision
    assert [r.model for r in promoted.config.fallbacks] == ["yandexgpt/latest", "gpt-4o"]
    assert all(r.api_key_masked for r in promoted.config.fallbacks)
    for call in (canary, other):
        (change,) = await changes_until_head(call, end)
        assert change.reason == pb.CHANGE_REASON_ROLLOUT_PROMOTED
        assert route_keys(change.config) == [YANDEX_KEY, CANDIDATE_OPENAI_KEY]
    for client_id in ("", CANARY, OTHER):
        assert route_keys(await active(stub, client_id)) == [YANDEX_KEY, CANDIDATE_OPENAI_KEY]
    # The stage's row now holds the candidate's routes, encrypted, with their model lists.
    routes = stored_routes(db_path)
    assert [r["model"] for r in routes] == ["yandexgpt/latest", "gpt-4o"]
    assert all(r["api_key_encrypted"] and r["models_cache"] for r in routes)
    assert_no_plaintext([database_text(db_path), caplog.text])
    canary.cancel()
    other.cancel()


async def test_abort_returns_the_cohort_to_the_stable_routes(stub: Stub, db_path: Path) -> None:
    await stable_poem(stub)
    started = await start_with_routes(stub)
    canary = watch(stub, CANARY)
    await first_snapshot(canary)
    aborted = await stub.AbortRollout(
        pb.AbortRolloutRequest(stage_type=POEM, expected_revision=started.config.revision)
    )
    end = aborted.config.revision
    (change,) = await changes_until_head(canary, end)
    assert change.reason == pb.CHANGE_REASON_ROLLOUT_ABORTED
    assert route_keys(change.config) == [OPENAI_KEY]
    for client_id in ("", CANARY, OTHER):
        assert route_keys(await active(stub, client_id)) == [OPENAI_KEY]
    assert [r["model"] for r in stored_routes(db_path)] == ["gpt-4o-mini"]
    canary.cancel()


async def test_a_rollout_of_the_primary_alone_keeps_the_stable_routes_and_clear_removes_them(
    stub: Stub,
) -> None:
    await stable_poem(stub)
    # No fallbacks in the request: the candidate keeps the stable routes.
    started = await stub.UpdateConfig(poem_request(model="gemini-2.5-flash", rollout=cohort()))
    assert [r.model for r in started.rollout.candidate.fallbacks] == ["gpt-4o-mini"]
    assert route_keys(await active(stub, CANARY)) == [OPENAI_KEY]
    await stub.AbortRollout(pb.AbortRolloutRequest(stage_type=POEM))
    # clear_fallbacks: the candidate has none; a promote clears them for everyone.
    cleared = await stub.UpdateConfig(
        poem_request(model="gemini-2.5-flash", clear_fallbacks=True, rollout=cohort())
    )
    assert list(cleared.rollout.candidate.fallbacks) == []
    assert route_keys(await active(stub, CANARY)) == []
    assert route_keys(await active(stub, OTHER)) == [OPENAI_KEY]
    await stub.PromoteRollout(pb.PromoteRolloutRequest(stage_type=POEM))
    assert route_keys(await active(stub, OTHER)) == []


async def test_a_rejected_candidate_route_key_starts_nothing(
    stub: Stub, db_path: Path, fake_providers: FakeProviders
) -> None:
    await stable_poem(stub)
    fake_providers.reject_key(CANDIDATE_OPENAI_KEY)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await start_with_routes(stub)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "fallbacks[1]" in (refused.value.details() or "")
    assert rollout_candidates(db_path) == []
    assert route_keys(await active(stub, CANARY)) == [OPENAI_KEY]


async def test_a_restart_and_a_key_rotation_mid_rollout_keep_the_candidate_routes(
    db_path: Path, fake_providers: FakeProviders
) -> None:
    old, new = "old-rollout-secret-4a7c2e9b1d", "new-rollout-secret-0b3d5f7a9c"
    async with serving(db_path, fake_providers, old) as stub:
        await stable_poem(stub)
        candidate = (await start_with_routes(stub)).config.revision
    # A restart with the same secret: the view reloads the candidate with its routes.
    async with serving(db_path, fake_providers, old) as stub:
        assert route_keys(await active(stub, CANARY)) == [YANDEX_KEY, CANDIDATE_OPENAI_KEY]
        assert route_keys(await active(stub, OTHER)) == [OPENAI_KEY]
    env = server_env(db_path, fake_providers, ADMIN_SECRET_KEY=new, ADMIN_SECRET_KEY_PREVIOUS=old)
    assert await rotate_keys(settings_for(env)) > 0
    # Only the new secret from now on: every key of the rollout still opens, and a
    # promote stores the candidate's routes for everyone.
    async with serving(db_path, fake_providers, new) as stub:
        assert route_keys(await active(stub, CANARY)) == [YANDEX_KEY, CANDIDATE_OPENAI_KEY]
        assert route_keys(await active(stub, OTHER)) == [OPENAI_KEY]
        await stub.PromoteRollout(
            pb.PromoteRolloutRequest(stage_type=POEM, expected_revision=candidate)
        )
        assert route_keys(await active(stub, OTHER)) == [YANDEX_KEY, CANDIDATE_OPENAI_KEY]
    assert_no_plaintext([database_text(db_path)])
