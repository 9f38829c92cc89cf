"""Proto ↔ domain for rollouts (issue 15): the spec of UpdateConfigRequest.rollout,
Rollout messages (candidate key always masked), and PromoteRollout / AbortRollout."""

from __future__ import annotations

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_server.rollout_types import (
    RolloutEnd,
    RolloutPolicy,
    RolloutSpec,
    RolloutState,
    RolloutView,
    Side,
)
from stageconfig_server.rpc.convert import config_to_pb, stage_from_pb, stage_to_pb, timestamp
from stageconfig_server.service import ConfigService

_STATE_TO_PB = {s: pb.RolloutState.Value(f"ROLLOUT_STATE_{s.value}") for s in RolloutState}


def spec_from_pb(request: pb.UpdateConfigRequest) -> RolloutSpec | None:
    """The rollout an UpdateConfig asks for, or None (an ordinary update). Checked by
    the service (``rollout_types.check_spec``), which names the fields."""
    if not request.HasField("rollout"):
        return None
    spec = request.rollout
    policy = None
    if spec.HasField("policy"):
        policy = RolloutPolicy(
            bake_seconds=spec.policy.bake_seconds,
            min_tasks=spec.policy.min_tasks,
            max_failure_rate_increase=spec.policy.max_failure_rate_increase,
        )
    return RolloutSpec(percent=spec.percent, client_ids=tuple(spec.client_ids), policy=policy)


def _side_to_pb(side: Side) -> pb.RolloutSide:
    return pb.RolloutSide(
        revision=side.revision,
        clients=side.clients,
        succeeded=side.succeeded,
        failed=side.failed,
        failure_rate=side.failure_rate,
    )


def rollout_to_pb(view: RolloutView) -> pb.Rollout:
    """A Rollout message; the candidate's key is masked."""
    record = view.record
    message = pb.Rollout(
        stage_type=stage_to_pb(record.stage_type),
        state=_STATE_TO_PB[record.state],
        candidate=config_to_pb(view.candidate, reveal_key=False),
        candidate_revision=record.candidate_revision,
        stable_revision=record.stable_revision,
        percent=record.percent,
        client_ids=list(record.client_ids),
        started_by=record.started_by,
        canary=_side_to_pb(view.canary),
        stable=_side_to_pb(view.stable),
        ended_by=record.ended_by,
        decision=record.decision,
        end_revision=record.end_revision or 0,
    )
    if record.policy is not None:
        message.policy.CopyFrom(
            pb.RolloutPolicy(
                bake_seconds=record.policy.bake_seconds,
                min_tasks=record.policy.min_tasks,
                max_failure_rate_increase=record.policy.max_failure_rate_increase,
            )
        )
    if (ts := timestamp(record.started_at)) is not None:
        message.started_at.CopyFrom(ts)
    if (ts := timestamp(record.ended_at)) is not None:
        message.ended_at.CopyFrom(ts)
    return message


async def end(
    service: ConfigService,
    request: pb.PromoteRolloutRequest | pb.AbortRolloutRequest,
    outcome: RolloutState,
    actor: str,
) -> tuple[pb.StageConfig, pb.Rollout]:
    """PromoteRollout (``outcome`` PROMOTED) or AbortRollout: the config and rollout."""
    expected = request.expected_revision if request.HasField("expected_revision") else None
    end = RolloutEnd(
        stage_from_pb(request.stage_type), outcome, actor, "", request.comment, expected
    )
    config, view = await service.end_rollout(end)
    return config_to_pb(config, reveal_key=False), rollout_to_pb(view)
