"""Proto → admin answers (``_admin_types``), built on ``_convert``'s field conversions.

Every key is masked here, even one a server without tokens sent in plaintext. A newer
server's values never make a conversion fail as a whole: statuses, causes, sources and
reasons become UNSPECIFIED (``_convert``), a provider kind this client does not know is
kept as its number, and an item whose stage (or, in a watch event, whose provider kind)
cannot be represented raises ``UnrepresentableConfig`` for ``representable`` to leave
out of its list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from types import MappingProxyType
from typing import TypeVar

from stageconfig._admin_routes import route_health_from_pb, route_report_from_pb, route_views
from stageconfig._admin_types import (
    ChangeEvent,
    ConfigOverview,
    FieldChange,
    FleetClient,
    FleetStatus,
    HeartbeatEvent,
    HistoryEntry,
    HistoryPage,
    ModelList,
    RefreshResult,
    RevisionFleetStatus,
    SnapshotEvent,
    StageFleetStatus,
    StageReport,
    StageView,
    TaskOutcomes,
    UpdateResult,
    WatcherInfo,
    WatcherList,
    WatchEvent,
)
from stageconfig._convert import (
    UnrepresentableConfig,
    config_from_pb,
    provider_from_pb,
    reason_from_pb,
    source_from_pb,
    stage_from_pb,
    status_from_pb,
    time_from_pb,
)
from stageconfig._types import ConfigSource, StageConfig, StageType
from stageconfig_contract.facts import mask_key
from stageconfig_contract.v1 import stage_config_pb2 as pb

M = TypeVar("M")
T = TypeVar("T")


def representable(
    messages: Iterable[M], convert: Callable[[M], T]
) -> tuple[tuple[T, ...], tuple[UnrepresentableConfig, ...]]:
    """Each message converted, leaving out (and returning) those this client cannot
    represent."""
    kept: list[T] = []
    left_out: list[UnrepresentableConfig] = []
    for message in messages:
        try:
            kept.append(convert(message))
        except UnrepresentableConfig as unknown:
            left_out.append(unknown)
    return tuple(kept), tuple(left_out)


def _known_stage(value: int, revision: int) -> StageType:
    stage = stage_from_pb(value)
    if stage is None:
        raise UnrepresentableConfig(None, "stage_type", value, revision)
    return stage


def masked_config_from_pb(message: pb.StageConfig) -> StageConfig:
    """A config with its key masked (raises UnrepresentableConfig like
    ``config_from_pb``)."""
    config = config_from_pb(message)
    # A server without tokens treats every caller as a worker and sends plaintext keys;
    # admin tools must still never show one.
    if config.api_key_masked or not config.api_key:
        return config
    return dataclasses.replace(config, api_key=mask_key(config.api_key), api_key_masked=True)


def stage_view_from_pb(message: pb.StageConfigView) -> StageView:
    """One stage of ListConfigs; raises UnrepresentableConfig for an unknown stage only
    (an unknown provider kind is kept as ``unknown_provider_kind``)."""
    stage = _known_stage(message.stage_type, message.config.revision)
    source = source_from_pb(message.config.source)
    provider_number = message.config.provider_kind
    configured = (
        source is not ConfigSource.UNCONFIGURED and provider_number != pb.PROVIDER_KIND_UNSPECIFIED
    )
    known_provider = provider_from_pb(provider_number) is not None
    stored = configured and source is not ConfigSource.FALLBACK
    return StageView(
        stage_type=stage,
        source=source if configured else ConfigSource.UNCONFIGURED,
        config=masked_config_from_pb(message.config) if configured and known_provider else None,
        models=tuple(message.models),
        allowed_providers=tuple(
            p for p in map(provider_from_pb, message.allowed_providers) if p is not None
        ),
        revision=message.config.revision if stored else 0,
        unknown_provider_kind=provider_number if configured and not known_provider else 0,
        routes=route_views(message.config.fallbacks),
    )


def overview_from_pb(
    answer: pb.ListConfigsResponse,
) -> tuple[ConfigOverview, tuple[UnrepresentableConfig, ...]]:
    """ListConfigs' answer, and the stages left out as unknown."""
    views, left_out = representable(answer.stages, stage_view_from_pb)
    return ConfigOverview(stages=views, head_revision=answer.head_revision), left_out


def model_list_from_pb(answer: pb.ListModelsResponse) -> ModelList:
    """ListModels' answer (an unknown provider kind is kept as its number)."""
    provider = provider_from_pb(answer.provider_kind)
    return ModelList(
        models=tuple(answer.models),
        updated_at=time_from_pb(answer.updated_at, answer.HasField("updated_at")),
        selected_model=answer.selected_model,
        provider_kind=provider,
        status=status_from_pb(answer.status),
        status_reason=answer.status_reason,
        unknown_provider_kind=answer.provider_kind if provider is None else 0,
    )


def history_entry_from_pb(message: pb.HistoryEntry) -> HistoryEntry:
    """One revision of the log; raises UnrepresentableConfig for an unknown stage."""
    return HistoryEntry(
        revision=message.revision,
        stage_type=_known_stage(message.stage_type, message.revision),
        time=time_from_pb(message.time, message.HasField("time")),
        actor=message.actor,
        reason=reason_from_pb(message.reason),
        changes=tuple(FieldChange(c.field, c.old_value, c.new_value) for c in message.changes),
        comment=message.comment,
    )


def history_page_from_pb(
    answer: pb.GetConfigHistoryResponse,
) -> tuple[HistoryPage, tuple[UnrepresentableConfig, ...]]:
    """GetConfigHistory's answer, and the entries left out as of unknown stages."""
    entries, left_out = representable(answer.entries, history_entry_from_pb)
    return HistoryPage(entries=entries, next_page_token=answer.next_page_token), left_out


def outcomes_from_pb(message: pb.TaskOutcomes) -> TaskOutcomes:
    """One revision's task outcomes."""
    return TaskOutcomes(
        revision=message.revision,
        succeeded=message.succeeded,
        failed=message.failed,
        retried=message.retried,
        failures_by_cause=MappingProxyType(dict(message.failures_by_cause)),
        duration_buckets=tuple(message.duration_buckets),
    )


def stage_report_from_pb(message: pb.StageReport) -> StageReport:
    """One stage as a client reported it; raises UnrepresentableConfig for an unknown
    stage."""
    return StageReport(
        stage_type=_known_stage(message.stage_type, message.revision),
        revision=message.revision,
        nack_revision=message.nack_revision,
        nack_reason=message.nack_reason,
        outcomes=tuple(map(outcomes_from_pb, message.outcomes)),
        routes=tuple(map(route_report_from_pb, message.routes)),
    )


def _stage_reports(messages: Iterable[pb.StageReport]) -> tuple[StageReport, ...]:
    # A stage this client cannot name is left out of a client's list, as a watcher's
    # unknown stage_types are: the rest of the client still shows.
    return representable(messages, stage_report_from_pb)[0]


def watcher_from_pb(w: pb.WatcherInfo) -> WatcherInfo:
    """One watcher (stages this client does not know are left out of its lists)."""
    return WatcherInfo(
        client_id=w.client_id,
        peer=w.peer,
        actor=w.actor,
        stage_types=tuple(s for s in map(stage_from_pb, w.stage_types) if s is not None),
        connected_since=time_from_pb(w.connected_since, w.HasField("connected_since")),
        last_revision=w.last_revision,
        client_version=w.client_version,
        applied_revision=w.applied_revision,
        nack_revision=w.nack_revision,
        nack_reason=w.nack_reason,
        last_report_time=time_from_pb(w.last_report_time, w.HasField("last_report_time")),
        stages=_stage_reports(w.stages),
    )


def watchers_from_pb(answer: pb.ListWatchersResponse) -> WatcherList:
    """ListWatchers' answer."""
    return WatcherList(
        watchers=tuple(map(watcher_from_pb, answer.watchers)),
        head_revision=answer.head_revision,
    )


def revision_fleet_from_pb(message: pb.RevisionFleetStatus) -> RevisionFleetStatus:
    """One revision of one stage across the fleet."""
    return RevisionFleetStatus(
        revision=message.revision,
        clients=message.clients,
        nacked=message.nacked,
        nack_reasons=tuple(message.nack_reasons),
        succeeded=message.succeeded,
        failed=message.failed,
        retried=message.retried,
        failure_rate=message.failure_rate,
        failures_by_cause=MappingProxyType(dict(message.failures_by_cause)),
        p50_duration_seconds=message.p50_duration_seconds,
        p95_duration_seconds=message.p95_duration_seconds,
    )


def stage_fleet_from_pb(message: pb.StageFleetStatus) -> StageFleetStatus:
    """One stage across the fleet; raises UnrepresentableConfig for an unknown stage."""
    return StageFleetStatus(
        stage_type=_known_stage(message.stage_type, message.revision),
        revision=message.revision,
        revisions=tuple(map(revision_fleet_from_pb, message.revisions)),
        silent_clients=message.silent_clients,
        routes=tuple(map(route_health_from_pb, message.routes)),
    )


def fleet_client_from_pb(message: pb.FleetClient) -> FleetClient:
    """One client that has reported (stages this client does not know left out)."""
    return FleetClient(
        client_id=message.client_id,
        host=message.host,
        pid=message.pid,
        client_version=message.client_version,
        applied_revision=message.applied_revision,
        last_report_time=time_from_pb(
            message.last_report_time, message.HasField("last_report_time")
        ),
        silent=message.silent,
        stages=_stage_reports(message.stages),
    )


def fleet_status_from_pb(
    answer: pb.GetFleetStatusResponse,
) -> tuple[FleetStatus, tuple[UnrepresentableConfig, ...]]:
    """GetFleetStatus' answer, and the stages left out as unknown."""
    stages, left_out = representable(answer.stages, stage_fleet_from_pb)
    status = FleetStatus(
        stages=stages,
        clients=tuple(map(fleet_client_from_pb, answer.clients)),
        head_revision=answer.head_revision,
        window_seconds=answer.window_seconds,
    )
    return status, left_out


def update_result_from_pb(answer: pb.UpdateConfigResponse) -> UpdateResult:
    """UpdateConfig's answer, key masked."""
    return UpdateResult(
        config=masked_config_from_pb(answer.config),
        models=tuple(answer.models),
        written=answer.written,
        routes=route_views(answer.config.fallbacks),
    )


def refresh_result_from_pb(message: pb.RefreshResult) -> RefreshResult:
    """One stage of RefreshModels' answer; raises UnrepresentableConfig for an unknown
    stage."""
    return RefreshResult(
        stage_type=_known_stage(message.stage_type, message.revision),
        status=status_from_pb(message.status),
        status_reason=message.status_reason,
        models=tuple(message.models),
        selected_model=message.selected_model,
        replaced_model=message.replaced_model,
        revision=message.revision,
    )


def watch_event_from_pb(
    message: pb.WatchConfigResponse,
) -> tuple[WatchEvent | None, tuple[UnrepresentableConfig, ...]]:
    """One WatchConfig message as an event (None: an event kind newer than this client),
    and the configs left out of it as unrepresentable. A change whose config cannot be
    represented raises UnrepresentableConfig."""
    kind = message.WhichOneof("event")
    if kind == "snapshot":
        configs, left_out = representable(message.snapshot.configs, masked_config_from_pb)
        return SnapshotEvent(revision=message.snapshot.revision, configs=configs), left_out
    if kind == "change":
        change = ChangeEvent(
            revision=message.change.revision,
            config=masked_config_from_pb(message.change.config),
            reason=reason_from_pb(message.change.reason),
        )
        return change, ()
    if kind == "heartbeat":
        beat = message.heartbeat
        heartbeat = HeartbeatEvent(
            head_revision=beat.head_revision,
            server_time=time_from_pb(beat.server_time, beat.HasField("server_time")),
        )
        return heartbeat, ()
    return None, ()
