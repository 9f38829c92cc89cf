"""Safe rollouts (issue 15), the manual path, against the real in-process server on a
real SQLite file: the cohort, what each side's watchers and GetActiveConfig get, resumes
per side, PromoteRollout / AbortRollout revisions and audiences, and refusals."""

from __future__ import annotations

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_server.app import StageConfigApp
from stageconfig_server.domain import StageType
from stageconfig_server.rollout_types import Cohort, in_percent
from tests.server.rollout_support import (
    CANDIDATE_KEY,
    VOICE,
    VOICE_KEY,
    Stub,
    changes_until_head,
    client_ids_by_side,
    set_voice,
    snapshot_of,
    start_rollout,
    watch,
)


def test_the_cohort_hash_is_stable_and_near_the_percentage() -> None:
    ids = [f"host-{n}/pid-{n * 7}" for n in range(2000)]
    first = [in_percent(StageType.VOICE, i, 20) for i in ids]
    # The same answer every time (no per-process salt): restarts and replicas agree.
    assert first == [in_percent(StageType.VOICE, i, 20) for i in ids]
    assert 300 < sum(first) < 500
    # A bigger percentage keeps everyone already in (a widening cohort never flips back).
    inside = [i for i, is_in in zip(ids, first, strict=True) if is_in]
    assert all(in_percent(StageType.VOICE, i, 50) for i in inside)
    # Independent per stage: the same worker is not always canary everywhere.
    assert first != [in_percent(StageType.POEM, i, 20) for i in ids]
    explicit = Cohort(StageType.VOICE, 0, frozenset({"a"}))
    assert explicit.contains("a")
    assert not explicit.contains("b")
    assert not explicit.contains("")


async def test_cohort_watchers_get_the_candidate_and_the_others_nothing(stub: Stub) -> None:
    stable_revision = await set_voice(stub, "alena")
    canary, stable = watch(stub, "canary-1"), watch(stub, "stable-1")
    assert [c.revision for c in (await snapshot_of(canary)).configs] == [stable_revision]
    assert [c.revision for c in (await snapshot_of(stable)).configs] == [stable_revision]

    started = await start_rollout(stub, "filipp", client_ids=["canary-1"])
    candidate = started.config.revision
    assert started.written
    assert candidate > stable_revision
    assert started.rollout.candidate_revision == candidate
    assert started.rollout.stable_revision == stable_revision
    assert started.rollout.state == pb.ROLLOUT_STATE_RUNNING
    assert started.rollout.candidate.api_key_masked

    got = await changes_until_head(canary, candidate)
    assert [(c.revision, c.config.model, c.config.api_key) for c in got] == [
        (candidate, "filipp", CANDIDATE_KEY)
    ]
    assert got[0].reason == pb.CHANGE_REASON_ROLLOUT_STARTED
    assert await changes_until_head(stable, candidate) == []

    # Promote: one new revision, for everyone; the cohort sees the same config again.
    promoted = await stub.PromoteRollout(
        pb.PromoteRolloutRequest(stage_type=VOICE, expected_revision=candidate)
    )
    end = promoted.config.revision
    assert end == candidate + 1
    assert promoted.config.model == "filipp"
    assert promoted.rollout.state == pb.ROLLOUT_STATE_PROMOTED
    assert promoted.rollout.end_revision == end
    for call in (canary, stable):
        got = await changes_until_head(call, end)
        assert [(c.revision, c.config.model, c.reason) for c in got] == [
            (end, "filipp", pb.CHANGE_REASON_ROLLOUT_PROMOTED)
        ]
        call.cancel()
    listed = await stub.ListConfigs(pb.ListConfigsRequest())
    voice = next(s for s in listed.stages if s.stage_type == VOICE)
    assert voice.config.revision == end
    assert not voice.HasField("rollout")


async def test_abort_reaches_the_cohort_only_and_resumes_per_side(stub: Stub) -> None:
    stable_revision = await set_voice(stub, "alena")
    inside, outside = client_ids_by_side(30)
    started = await start_rollout(stub, "filipp", percent=30)
    candidate = started.config.revision

    # Snapshots per side, then both streams go away (a reconnect later resumes).
    for client_id, revision, model in (
        (inside[0], candidate, "filipp"),
        (outside[0], stable_revision, "alena"),
    ):
        call = watch(stub, client_id)
        configs = (await snapshot_of(call)).configs
        assert [(c.revision, c.model) for c in configs] == [(revision, model)]
        call.cancel()

    # GetActiveConfig answers per client_id; without one, the stable config.
    for client_id, model in ((inside[1], "filipp"), (outside[1], "alena"), ("", "alena")):
        active = await stub.GetActiveConfig(
            pb.GetActiveConfigRequest(stage_type=VOICE, client_id=client_id)
        )
        assert active.config.model == model

    aborted = await stub.AbortRollout(pb.AbortRolloutRequest(stage_type=VOICE, comment="bad"))
    end = aborted.config.revision
    assert end == candidate + 1
    assert aborted.config.model == "alena"
    assert aborted.config.api_key_masked
    assert VOICE_KEY not in str(aborted)
    assert aborted.rollout.state == pb.ROLLOUT_STATE_ABORTED

    # The cohort resumes from the candidate and gets the abort; the stable side resumes
    # from where it was and gets nothing (and from the candidate's revision: nothing).
    canary = watch(stub, inside[0], resume=candidate)
    got = await changes_until_head(canary, end)
    assert [(c.revision, c.config.model, c.config.api_key, c.reason) for c in got] == [
        (end, "alena", VOICE_KEY, pb.CHANGE_REASON_ROLLOUT_ABORTED)
    ]
    for resume in (stable_revision, candidate):
        stable = watch(stub, outside[0], resume=resume)
        assert await changes_until_head(stable, end) == []
        stable.cancel()
    canary.cancel()
    # After the end everyone's GetActiveConfig is the stable config at the new revision.
    active = await stub.GetActiveConfig(
        pb.GetActiveConfigRequest(stage_type=VOICE, client_id=inside[1])
    )
    assert (active.config.model, active.config.revision) == ("alena", end)


async def test_history_and_log_audiences_of_start_promote_abort(
    stub: Stub, app: StageConfigApp
) -> None:
    await set_voice(stub, "alena")
    first = (await start_rollout(stub, "filipp", client_ids=["c"])).config.revision
    await stub.AbortRollout(pb.AbortRolloutRequest(stage_type=VOICE))
    second = (await start_rollout(stub, "ermil", client_ids=["c"], key=None)).config.revision
    await stub.PromoteRollout(pb.PromoteRolloutRequest(stage_type=VOICE, comment="looks good"))

    history = await stub.GetConfigHistory(
        pb.GetConfigHistoryRequest(stage_type=VOICE, page_size=10)
    )
    assert [(e.revision, e.reason) for e in history.entries][:4] == [
        (second + 1, pb.CHANGE_REASON_ROLLOUT_PROMOTED),
        (second, pb.CHANGE_REASON_ROLLOUT_STARTED),
        (first + 1, pb.CHANGE_REASON_ROLLOUT_ABORTED),
        (first, pb.CHANGE_REASON_ROLLOUT_STARTED),
    ]
    assert history.entries[0].comment == "looks good"
    assert CANDIDATE_KEY not in str(history)
    assert VOICE_KEY not in str(history)
    entries = await app.service.repository.log_since(first - 1)
    assert [(e.revision, e.audience) for e in entries] == [
        (first, "canary"),
        (first + 1, "canary"),
        (second, "canary"),
        (second + 1, "all"),
    ]
    assert len({e.rollout_id for e in entries}) == 2


async def _refused(call: object, code: grpc.StatusCode, *words: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    assert raised.value.code() == code, raised.value.details()
    for word in words:
        assert word in (raised.value.details() or "")


async def test_refusals_are_precise_and_write_nothing(stub: Stub, app: StageConfigApp) -> None:
    # Nothing stored: no stable config to compare with.
    await _refused(start_rollout(stub, "filipp", percent=10), grpc.StatusCode.FAILED_PRECONDITION)
    await _refused(
        stub.PromoteRollout(pb.PromoteRolloutRequest(stage_type=VOICE)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "no rollout",
    )
    stable_revision = await set_voice(stub, "alena")
    for spec, field in (
        ({"percent": 0}, "rollout.percent"),
        ({"percent": 100}, "rollout.percent"),
        ({"percent": 5, "client_ids": ["a"]}, "rollout.percent"),
        ({"client_ids": ["a", "a"]}, "rollout.client_ids[1]"),
        ({"client_ids": [""]}, "rollout.client_ids[0]"),
        ({"client_ids": ["x" * 129]}, "rollout.client_ids[0]"),
        ({"client_ids": [f"w{n}" for n in range(1001)]}, "rollout.client_ids"),
    ):
        request = pb.UpdateConfigRequest(
            stage_type=VOICE, provider_kind=pb.PROVIDER_KIND_SPEECHKIT, model="filipp"
        )
        request.rollout.CopyFrom(pb.RolloutSpec(**spec))  # type: ignore[arg-type]
        await _refused(stub.UpdateConfig(request), grpc.StatusCode.INVALID_ARGUMENT, field)
    for bad, field in (
        (pb.RolloutPolicy(bake_seconds=0, min_tasks=1), "rollout.policy.bake_seconds"),
        (pb.RolloutPolicy(bake_seconds=86401, min_tasks=1), "rollout.policy.bake_seconds"),
        (pb.RolloutPolicy(bake_seconds=5, min_tasks=0), "rollout.policy.min_tasks"),
        (
            pb.RolloutPolicy(bake_seconds=5, min_tasks=1, max_failure_rate_increase=1.5),
            "rollout.policy.max_failure_rate_increase",
        ),
    ):
        await _refused(
            start_rollout(stub, "filipp", percent=5, policy=bad),
            grpc.StatusCode.INVALID_ARGUMENT,
            field,
        )
    # validate_only checks everything and writes nothing.
    request = pb.UpdateConfigRequest(
        stage_type=VOICE,
        provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
        model="filipp",
        validate_only=True,
        rollout=pb.RolloutSpec(percent=10),
    )
    assert not (await stub.UpdateConfig(request)).written
    listed = await stub.ListConfigs(pb.ListConfigsRequest())
    assert listed.head_revision == stable_revision

    candidate = (await start_rollout(stub, "filipp", percent=10)).config.revision
    running = f"candidate revision {candidate}"
    await _refused(set_voice(stub, "ermil"), grpc.StatusCode.FAILED_PRECONDITION, running)
    await _refused(
        start_rollout(stub, "ermil", percent=10), grpc.StatusCode.FAILED_PRECONDITION, running
    )
    await _refused(
        stub.RollbackConfig(pb.RollbackConfigRequest(stage_type=VOICE, to_revision=1)),
        grpc.StatusCode.FAILED_PRECONDITION,
        running,
    )
    await _refused(
        stub.PromoteRollout(pb.PromoteRolloutRequest(stage_type=VOICE, expected_revision=1)),
        grpc.StatusCode.ABORTED,
    )
    await _refused(
        stub.AbortRollout(pb.AbortRolloutRequest(stage_type=pb.STAGE_TYPE_POEM)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    # The daily sync / RefreshModels skip the stage and say why.
    refreshed = await stub.RefreshModels(pb.RefreshModelsRequest(stage_type=VOICE))
    assert "rollout" in refreshed.results[0].status_reason
    synced = await app.sync.run_once()
    assert synced is not None
    assert [o.status_reason.startswith("refresh skipped: a rollout") for o in synced] == [True]
    listed = await stub.ListConfigs(pb.ListConfigsRequest())
    assert listed.head_revision == candidate
    voice = next(s for s in listed.stages if s.stage_type == VOICE)
    assert voice.config.revision == stable_revision
    assert voice.rollout.candidate_revision == candidate
    assert voice.rollout.percent == 10
    assert CANDIDATE_KEY not in str(listed)


async def test_list_watchers_names_the_canary_stages(stub: Stub) -> None:
    await set_voice(stub, "alena")
    await start_rollout(stub, "filipp", client_ids=["in"])
    calls = [watch(stub, "in"), watch(stub, "out")]
    for call in calls:
        await snapshot_of(call)
    watchers = await stub.ListWatchers(pb.ListWatchersRequest())
    canary = {w.client_id: list(w.canary_stages) for w in watchers.watchers}
    assert canary == {"in": [VOICE], "out": []}
    for call in calls:
        call.cancel()


async def test_a_client_without_a_client_id_stays_on_the_stable_side(stub: Stub) -> None:
    await set_voice(stub, "alena")
    anonymous = watch(stub, "")
    await snapshot_of(anonymous)
    candidate = (await start_rollout(stub, "filipp", percent=99)).config.revision
    assert await changes_until_head(anonymous, candidate) == []
    anonymous.cancel()
    again = watch(stub, "")
    assert [c.model for c in (await snapshot_of(again)).configs] == ["alena"]
    again.cancel()
    active = await stub.GetActiveConfig(pb.GetActiveConfigRequest(stage_type=VOICE))
    assert active.config.model == "alena"
