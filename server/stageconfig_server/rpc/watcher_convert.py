"""A connected WatchConfig stream as ListWatchers shows it (``pb.WatcherInfo``): its own
facts, the stages it is a canary for, and what its client last reported."""

from __future__ import annotations

from collections.abc import Callable

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_server.broadcast import Watcher
from stageconfig_server.domain import StageType
from stageconfig_server.fleet_aggregate import ClientView
from stageconfig_server.rollout_types import RolloutRecord
from stageconfig_server.rpc import convert, fleet_convert


def watcher_to_pb(
    watcher: Watcher,
    running_rollout: Callable[[StageType], RolloutRecord | None],
    report: ClientView | None,
) -> pb.WatcherInfo:
    """``watcher`` with its canary stages (by the running rollouts' cohorts) and, when
    its client has reported, the report's applied revision, refusals and stages."""
    stages = sorted(watcher.stages)
    info = pb.WatcherInfo(
        client_id=watcher.client_id,
        peer=watcher.peer,
        stage_types=[convert.stage_to_pb(s) for s in stages],
        last_revision=watcher.last_revision,
        actor=watcher.actor,
        client_version=watcher.client_version,
        canary_stages=[
            convert.stage_to_pb(s)
            for s in stages
            if (rollout := running_rollout(s)) is not None
            and rollout.cohort.contains(watcher.cohort_id)
        ],
    )
    if (ts := convert.timestamp(watcher.connected_since)) is not None:
        info.connected_since.CopyFrom(ts)
    if report is not None:
        fleet_convert.fill_watcher(info, report)
    return info
