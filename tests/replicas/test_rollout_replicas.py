"""Rollouts (issue 15) across two replicas on one PostgreSQL database: a rollout started
on one is served and enforced by the other, both judge it and exactly one decision is
written, and the other replica's cohort watchers receive it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import StageConfigApp
from tests.fakes.provider_server import FakeProviders
from tests.server.rollout_support import (
    VOICE,
    changes_until_head,
    client_ids_by_side,
    policy,
    report,
    set_voice,
    snapshot_of,
    start_rollout,
    watch,
)
from tests.server.test_rollout_policy import MovableClock
from tests.support.servers import start_app

INSIDE, OUTSIDE = client_ids_by_side(50)


@pytest.fixture
async def two_replicas(
    pg_url: str, tmp_path: Path, fake_providers: FakeProviders
) -> AsyncIterator[tuple[StageConfigApp, StageConfigApp, MovableClock]]:
    clock = MovableClock()
    apps = [
        await start_app(
            tmp_path / "unused.db",
            fake_providers,
            clock=clock,
            STAGECONFIG_DATABASE_URL=pg_url,
            # The judges' own loops stay out of the way: the test fires both at once.
            STAGECONFIG_ROLLOUT_CHECK_SECONDS="3600",
        )
        for _ in range(2)
    ]
    try:
        yield apps[0], apps[1], clock
    finally:
        for app in apps:
            await app.stop(grace=1)


async def test_two_replicas_write_exactly_one_decision(
    two_replicas: tuple[StageConfigApp, StageConfigApp, MovableClock],
) -> None:
    a, b, clock = two_replicas
    async with (
        grpc.aio.insecure_channel(a.target) as to_a,
        grpc.aio.insecure_channel(b.target) as to_b,
    ):
        stub_a, stub_b = pbg.StageConfigServiceStub(to_a), pbg.StageConfigServiceStub(to_b)
        stable = await set_voice(stub_a, "alena")
        candidate = (
            await start_rollout(stub_a, "filipp", percent=50, policy=policy(bake=30))
        ).config.revision
        # B refuses a change at once, whether or not it has applied A's start yet.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await set_voice(stub_b, "ermil")
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        canary_on_b = watch(stub_b, INSIDE[0], resume=stable)
        assert [c.revision for c in await changes_until_head(canary_on_b, candidate)] == [candidate]
        stable_on_b = watch(stub_b, OUTSIDE[0])
        assert [c.model for c in (await snapshot_of(stable_on_b)).configs] == ["alena"]

        await report(stub_b, INSIDE[0], candidate, succeeded=2, failed=8)
        await report(stub_a, OUTSIDE[0], stable, succeeded=10)
        clock.advance(31)
        # Both replicas judge at the same moment: exactly one writes the decision.
        judged = await asyncio.gather(
            a.judge.check_once(),  # type: ignore[union-attr]
            b.judge.check_once(),  # type: ignore[union-attr]
        )
        assert sorted(len(written) for written in judged) == [0, 1]

        end = candidate + 1
        got = await changes_until_head(canary_on_b, end)
        assert [(c.revision, c.reason, c.config.model) for c in got] == [
            (end, pb.CHANGE_REASON_ROLLOUT_ABORTED, "alena")
        ]
        assert await changes_until_head(stable_on_b, end) == []
        for call in (canary_on_b, stable_on_b):
            call.cancel()

        history = await stub_b.GetConfigHistory(
            pb.GetConfigHistoryRequest(stage_type=VOICE, page_size=10)
        )
        decisions = [
            e
            for e in history.entries
            if e.reason in (pb.CHANGE_REASON_ROLLOUT_ABORTED, pb.CHANGE_REASON_ROLLOUT_PROMOTED)
        ]
        assert [(e.revision, e.actor) for e in decisions] == [(end, "stageconfig-rollout")]
        for stub in (stub_a, stub_b):
            listed = await stub.ListConfigs(pb.ListConfigsRequest())
            voice = next(s for s in listed.stages if s.stage_type == VOICE)
            assert not voice.HasField("rollout")
            assert voice.config.revision == end
