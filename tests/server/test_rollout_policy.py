"""Safe rollouts (issue 15), the automatic policy, against the real in-process server on
a real SQLite file: outcomes sent with ReportStatus decide; each decision is a history
entry by stageconfig-rollout with its figures, an admin webhook event, a log line and a
metric; a canary without tasks is never promoted; a restart mid-rollout keeps judging;
no plaintext key reaches history, views, events or logs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from pytest_httpserver import HTTPServer

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import StageConfigApp
from stageconfig_server.domain import StageType
from stageconfig_server.rollout_judge import decide
from stageconfig_server.rollout_types import RolloutPolicy, RolloutRecord, RolloutState, Side
from tests.fakes.provider_server import FakeProviders
from tests.server.rollout_support import (
    CANDIDATE_KEY,
    VOICE,
    VOICE_KEY,
    Stub,
    changes_until_head,
    client_ids_by_side,
    policy,
    report,
    set_voice,
    start_rollout,
    watch,
)
from tests.support.servers import start_app

INSIDE, OUTSIDE = client_ids_by_side(50)


class MovableClock:
    """The server's clock, moved by the test past a rollout's bake time."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def judged(
    db_path: Path, fake_providers: FakeProviders, clock: MovableClock, httpserver: HTTPServer
) -> AsyncIterator[StageConfigApp]:
    """A server judging every 0.1 s, posting admin events to ``httpserver``."""
    httpserver.expect_request("/hooks", method="POST").respond_with_data("ok")
    app = await start_app(
        db_path,
        fake_providers,
        clock=clock,
        STAGECONFIG_ROLLOUT_CHECK_SECONDS="0.1",
        STAGECONFIG_ADMIN_WEBHOOK_URL=httpserver.url_for("/hooks"),
    )
    try:
        yield app
    finally:
        await app.stop(grace=1)


async def _ended(stub: Stub, seconds: float = 10.0) -> pb.HistoryEntry:
    """The newest VOICE history entry once the running rollout has ended."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        listed = await stub.ListConfigs(pb.ListConfigsRequest())
        voice = next(s for s in listed.stages if s.stage_type == VOICE)
        if not voice.HasField("rollout"):
            history = await stub.GetConfigHistory(
                pb.GetConfigHistoryRequest(stage_type=VOICE, page_size=1)
            )
            return history.entries[0]
        assert asyncio.get_running_loop().time() < deadline, "the rollout never ended"
        await asyncio.sleep(0.05)


def test_the_policy_promotes_at_the_limit_and_aborts_above_it() -> None:
    now = datetime.now(UTC)
    record = RolloutRecord(
        id=1,
        stage_type=StageType.VOICE,
        state=RolloutState.RUNNING,
        stable_revision=1,
        candidate_revision=2,
        end_revision=None,
        percent=10,
        client_ids=(),
        policy=RolloutPolicy(bake_seconds=60, min_tasks=10, max_failure_rate_increase=0.25),
        candidate=None,  # type: ignore[arg-type]  # the policy never reads it
        started_at=now,
        started_by="admin",
    )
    baked = now + timedelta(seconds=60)
    stable = Side(1, succeeded=3, failed=1)  # 0.25
    promoted = decide(record, Side(2, succeeded=5, failed=5), stable, baked)
    assert promoted is not None
    assert promoted[0] is RolloutState.PROMOTED
    assert "+0.2500 ≤ max increase 0.2500" in promoted[1]
    verdict = decide(record, Side(2, succeeded=4, failed=6), stable, baked)
    assert verdict is not None
    assert verdict[0] is RolloutState.ABORTED
    assert "+0.3500 > max increase 0.2500" in verdict[1]
    # Not baked, too few tasks, or no tasks at all: no decision.
    early = now + timedelta(seconds=59)
    assert decide(record, Side(2, succeeded=10), stable, early) is None
    assert decide(record, Side(2, succeeded=9), stable, baked) is None
    assert decide(record, Side(2), Side(1), baked + timedelta(days=1)) is None


async def test_failing_canary_is_aborted_with_figures_event_log_and_metric(
    judged: StageConfigApp,
    clock: MovableClock,
    httpserver: HTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with grpc.aio.insecure_channel(judged.target) as channel:
        stub = pbg.StageConfigServiceStub(channel)
        stable = await set_voice(stub, "alena")
        started = await start_rollout(stub, "filipp", percent=50, policy=policy(bake=30))
        candidate = started.config.revision
        await report(stub, INSIDE[0], candidate, succeeded=3, failed=3)
        await report(stub, INSIDE[1], candidate, succeeded=1, failed=1)
        await report(stub, OUTSIDE[0], stable, succeeded=20)

        listed = await stub.ListConfigs(pb.ListConfigsRequest())
        rollout = next(s for s in listed.stages if s.stage_type == VOICE).rollout
        assert (rollout.canary.succeeded, rollout.canary.failed) == (4, 4)
        assert (rollout.canary.clients, rollout.stable.clients) == (2, 1)
        assert rollout.canary.failure_rate == pytest.approx(0.5)
        assert (rollout.stable.succeeded, rollout.stable.failure_rate) == (20, 0.0)
        fleet = await stub.GetFleetStatus(pb.GetFleetStatusRequest(stage_type=VOICE))
        assert fleet.stages[0].rollout.candidate_revision == candidate
        # Not before the bake time, however bad the canary looks.
        assert await judged.judge.check_once() == []  # type: ignore[union-attr]

        clock.advance(31)
        entry = await _ended(stub)
        assert entry.reason == pb.CHANGE_REASON_ROLLOUT_ABORTED
        assert entry.revision == candidate + 1
        assert entry.actor == "stageconfig-rollout"
        assert "canary failure rate 0.5000 (4/8 tasks" in entry.comment
        assert "stable failure rate 0.0000 (0/20 tasks" in entry.comment
        active = await stub.GetActiveConfig(
            pb.GetActiveConfigRequest(stage_type=VOICE, client_id=INSIDE[0])
        )
        assert active.config.model == "alena"
        views = str(listed) + str(fleet) + str(entry)

    sample = judged.metrics.registry.get_sample_value(
        "stageconfig_rollouts_total",
        {"stage": "VOICE", "state": "ABORTED", "trigger": "automatic"},
    )
    assert sample == 1.0
    bodies = [request.get_data(as_text=True) for request, _response in httpserver.log]
    events = [json.loads(body)["event"] for body in bodies]
    assert events == ["rollout_started", "rollout_aborted"]
    assert "canary failure rate" in json.loads(bodies[1])["decision"]
    assert any("rollout_aborted" in r.getMessage() for r in caplog.records)
    for text in (*bodies, caplog.text, views):
        assert CANDIDATE_KEY not in text
        assert VOICE_KEY not in text


async def test_healthy_canary_is_promoted(judged: StageConfigApp, clock: MovableClock) -> None:
    async with grpc.aio.insecure_channel(judged.target) as channel:
        stub = pbg.StageConfigServiceStub(channel)
        stable = await set_voice(stub, "alena")
        candidate = (
            await start_rollout(stub, "filipp", percent=50, policy=policy(min_tasks=10))
        ).config.revision
        await report(stub, INSIDE[0], candidate, succeeded=10)
        await report(stub, OUTSIDE[0], stable, succeeded=9, failed=1)
        clock.advance(2)
        entry = await _ended(stub)
        assert (entry.reason, entry.actor) == (
            pb.CHANGE_REASON_ROLLOUT_PROMOTED,
            "stageconfig-rollout",
        )
        active = await stub.GetActiveConfig(
            pb.GetActiveConfigRequest(stage_type=VOICE, client_id=OUTSIDE[0])
        )
        assert (active.config.model, active.config.revision) == ("filipp", candidate + 1)


async def test_a_canary_without_tasks_is_never_promoted(
    judged: StageConfigApp, clock: MovableClock
) -> None:
    async with grpc.aio.insecure_channel(judged.target) as channel:
        stub = pbg.StageConfigServiceStub(channel)
        stable = await set_voice(stub, "alena")
        candidate = (
            await start_rollout(stub, "filipp", percent=50, policy=policy(min_tasks=1, increase=1))
        ).config.revision
        # The canary reports its state but ran nothing; the stable side did.
        await report(stub, INSIDE[0], candidate)
        await report(stub, OUTSIDE[0], stable, succeeded=50)
        clock.advance(3600)
        assert await judged.judge.check_once() == []  # type: ignore[union-attr]
        listed = await stub.ListConfigs(pb.ListConfigsRequest())
        voice = next(s for s in listed.stages if s.stage_type == VOICE)
        assert voice.rollout.candidate_revision == candidate
        assert voice.rollout.canary.succeeded + voice.rollout.canary.failed == 0


async def test_the_judge_resumes_after_a_restart_mid_rollout(
    db_path: Path, fake_providers: FakeProviders, clock: MovableClock
) -> None:
    first = await start_app(
        db_path, fake_providers, clock=clock, STAGECONFIG_ROLLOUT_CHECK_SECONDS="0.1"
    )
    try:
        async with grpc.aio.insecure_channel(first.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            stable = await set_voice(stub, "alena")
            candidate = (
                await start_rollout(stub, "filipp", percent=50, policy=policy(bake=60))
            ).config.revision
    finally:
        await first.stop(grace=1)

    second = await start_app(
        db_path, fake_providers, clock=clock, STAGECONFIG_ROLLOUT_CHECK_SECONDS="0.1"
    )
    try:
        async with grpc.aio.insecure_channel(second.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            # The new process serves the rollout from the database.
            active = await stub.GetActiveConfig(
                pb.GetActiveConfigRequest(stage_type=VOICE, client_id=INSIDE[0])
            )
            assert (active.config.model, active.config.revision) == ("filipp", candidate)
            # Resumes across the restart: each side gets exactly what it missed.
            canary = watch(stub, INSIDE[0], resume=stable)
            got = await changes_until_head(canary, candidate)
            assert [(c.revision, c.config.model) for c in got] == [(candidate, "filipp")]
            outside = watch(stub, OUTSIDE[0], resume=stable)
            assert await changes_until_head(outside, candidate) == []
            for call in (canary, outside):
                call.cancel()
            await report(stub, INSIDE[0], candidate, succeeded=1, failed=9)
            await report(stub, OUTSIDE[0], stable, succeeded=10)
            clock.advance(61)
            entry = await _ended(stub)
            assert entry.reason == pb.CHANGE_REASON_ROLLOUT_ABORTED
            assert entry.actor == "stageconfig-rollout"
    finally:
        await second.stop(grace=1)
