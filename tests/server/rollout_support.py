"""Helpers of the rollout tests (issue 15): start a rollout, report outcomes, watch
with a client id, read a stream to a heartbeat at or past a revision."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.domain import StageType
from stageconfig_server.rollout_types import in_percent

Stub = pbg.StageConfigServiceStub
Stream = grpc.aio.UnaryStreamCall[pb.WatchConfigRequest, pb.WatchConfigResponse]
VOICE = pb.STAGE_TYPE_VOICE
VOICE_KEY = "AQVN-voice-key-stable-0001"
CANDIDATE_KEY = "AQVN-voice-key-candidate-0002"


async def set_voice(stub: Stub, model: str, key: str = VOICE_KEY) -> int:
    """VOICE on SpeechKit (no network, any key); returns the new revision."""
    response = await stub.UpdateConfig(
        pb.UpdateConfigRequest(
            stage_type=VOICE, provider_kind=pb.PROVIDER_KIND_SPEECHKIT, api_key=key, model=model
        )
    )
    return response.config.revision


async def start_rollout(
    stub: Stub,
    model: str,
    *,
    client_ids: Sequence[str] = (),
    percent: int = 0,
    policy: pb.RolloutPolicy | None = None,
    key: str | None = CANDIDATE_KEY,
) -> pb.UpdateConfigResponse:
    """UpdateConfig of VOICE with a rollout."""
    spec = pb.RolloutSpec(percent=percent, client_ids=list(client_ids))
    if policy is not None:
        spec.policy.CopyFrom(policy)
    request = pb.UpdateConfigRequest(
        stage_type=VOICE, provider_kind=pb.PROVIDER_KIND_SPEECHKIT, model=model, rollout=spec
    )
    if key is not None:
        request.api_key = key
    response: pb.UpdateConfigResponse = await stub.UpdateConfig(request)
    return response


def watch(stub: Stub, client_id: str, resume: int | None = None) -> Stream:
    """A raw VOICE watch stream under ``client_id``."""
    request = pb.WatchConfigRequest(stage_types=[VOICE], client_id=client_id)
    if resume is not None:
        request.resume_revision = resume
    return stub.WatchConfig(request)


async def next_message(call: Stream, seconds: float = 10.0) -> pb.WatchConfigResponse:
    message = await asyncio.wait_for(call.read(), seconds)
    assert message is not grpc.aio.EOF, "the stream ended"
    assert isinstance(message, pb.WatchConfigResponse)
    return message


async def snapshot_of(call: Stream) -> pb.Snapshot:
    message = await next_message(call)
    assert message.WhichOneof("event") == "snapshot", message
    return message.snapshot


async def changes_until_head(call: Stream, head: int) -> list[pb.Change]:
    """Every change the stream carries until a heartbeat whose head is ≥ ``head``."""
    changes: list[pb.Change] = []
    while True:
        message = await next_message(call)
        kind = message.WhichOneof("event")
        if kind == "heartbeat" and message.heartbeat.head_revision >= head:
            return changes
        if kind == "change":
            changes.append(message.change)


async def report(
    stub: Stub,
    client_id: str,
    revision: int,
    *,
    succeeded: int = 0,
    failed: int = 0,
    sequence: int = 1,
) -> None:
    """A worker's ReportStatus: VOICE at ``revision`` with these task outcomes."""
    await stub.ReportStatus(
        pb.ReportStatusRequest(
            client_id=client_id,
            applied_revision=revision,
            sequence=sequence,
            report_interval_seconds=60,
            stages=[
                pb.StageReport(
                    stage_type=VOICE,
                    revision=revision,
                    outcomes=[
                        pb.TaskOutcomes(revision=revision, succeeded=succeeded, failed=failed)
                    ],
                )
            ],
        )
    )


def client_ids_by_side(percent: int, count: int = 200) -> tuple[list[str], list[str]]:
    """Client ids in and out of a ``percent`` cohort of VOICE."""
    ids = [f"worker-{n}" for n in range(count)]
    inside = [i for i in ids if in_percent(StageType.VOICE, i, percent)]
    return inside, [i for i in ids if i not in inside]


def policy(bake: int = 1, min_tasks: int = 4, increase: float = 0.1) -> pb.RolloutPolicy:
    return pb.RolloutPolicy(
        bake_seconds=bake, min_tasks=min_tasks, max_failure_rate_increase=increase
    )
