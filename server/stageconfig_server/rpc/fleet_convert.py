"""Proto ↔ domain for fleet truth (ReportStatus, GetFleetStatus, ListWatchers' report
fields), in one place. Proto types stop here."""

from __future__ import annotations

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_server.errors import InvalidArgument
from stageconfig_server.fleet import (
    MAX_REPORT_BYTES,
    Outcomes,
    StageReport,
    StageState,
    StatusReport,
)
from stageconfig_server.fleet_aggregate import ClientView, FleetStatus, RevisionStatus
from stageconfig_server.rpc.convert import stage_from_pb, stage_to_pb, timestamp
from stageconfig_server.rpc.route_convert import (
    route_health_from_pb,
    route_health_to_pb,
    route_status_to_pb,
)


def batch_from_pb(
    request: pb.ReportStatusRequest,
) -> tuple[StatusReport | None, list[StatusReport]]:
    """A ReportStatus request in domain terms: the caller's own report (None when the
    request only carries ``processes``, a host agent's) and its processes' reports, each
    bounded in size and with known stages (the field checks follow in
    ``fleet_service.report_batch``)."""
    processes: list[StatusReport] = []
    nested_bytes = 0
    for i, entry in enumerate(request.processes):
        where = f"processes[{i}]"
        if entry.processes:
            raise InvalidArgument(
                f"{where}.processes", "a process's report may not carry processes itself"
            )
        processes.append(report_from_pb(entry, where))
        nested_bytes += entry.ByteSize()
    if request.processes and not request.client_id:
        if request.sequence or request.applied_revision or request.stages:
            raise InvalidArgument(
                "client_id", "is required: the request reports for itself besides its processes"
            )
        return None, processes
    return report_from_pb(request, size=request.ByteSize() - nested_bytes), processes


def report_from_pb(
    request: pb.ReportStatusRequest, where: str = "", size: int | None = None
) -> StatusReport:
    """One report in domain terms, bounded in size (``where``: the prefix of its fields'
    paths, ``size``: its encoded size when it carries others)."""
    prefix = f"{where}." if where else ""
    size = request.ByteSize() if size is None else size
    if size > MAX_REPORT_BYTES:
        raise InvalidArgument(
            f"{prefix}stages",
            f"the report is {size} bytes; a report may be at most {MAX_REPORT_BYTES}",
        )
    return StatusReport(
        client_id=request.client_id,
        sequence=request.sequence,
        applied_revision=request.applied_revision,
        host=request.host,
        pid=request.pid,
        client_version=request.client_version,
        stages=tuple(
            _stage_from_pb(s, f"{prefix}stages[{i}]") for i, s in enumerate(request.stages)
        ),
        report_interval_seconds=request.report_interval_seconds,
    )


def _stage_from_pb(stage: pb.StageReport, where: str) -> StageReport:
    return StageReport(
        state=StageState(
            stage_type=stage_from_pb(stage.stage_type, f"{where}.stage_type"),
            revision=stage.revision,
            nack_revision=stage.nack_revision,
            nack_reason=stage.nack_reason,
            routes=tuple(route_health_from_pb(r) for r in stage.routes),
        ),
        outcomes=tuple(
            Outcomes(
                revision=o.revision,
                succeeded=o.succeeded,
                failed=o.failed,
                retried=o.retried,
                failures_by_cause=dict(o.failures_by_cause),
                duration_buckets=tuple(o.duration_buckets),
            )
            for o in stage.outcomes
        ),
    )


def outcomes_to_pb(outcomes: Outcomes) -> pb.TaskOutcomes:
    """Summed outcomes of one revision."""
    return pb.TaskOutcomes(
        revision=outcomes.revision,
        succeeded=outcomes.succeeded,
        failed=outcomes.failed,
        retried=outcomes.retried,
        failures_by_cause=dict(outcomes.failures_by_cause),
        duration_buckets=list(outcomes.duration_buckets),
    )


def stage_report_to_pb(report: StageReport) -> pb.StageReport:
    """A stage as a client last reported it, with outcomes over a window."""
    state = report.state
    return pb.StageReport(
        stage_type=stage_to_pb(state.stage_type),
        revision=state.revision,
        nack_revision=state.nack_revision,
        nack_reason=state.nack_reason,
        outcomes=[outcomes_to_pb(o) for o in report.outcomes],
        routes=[route_health_to_pb(r) for r in state.routes],
    )


def _revision_to_pb(status: RevisionStatus) -> pb.RevisionFleetStatus:
    return pb.RevisionFleetStatus(
        revision=status.revision,
        clients=status.clients,
        nacked=status.nacked,
        nack_reasons=list(status.nack_reasons),
        succeeded=status.succeeded,
        failed=status.failed,
        retried=status.retried,
        failure_rate=status.failure_rate,
        failures_by_cause=dict(status.failures_by_cause),
        p50_duration_seconds=status.p50_duration_seconds,
        p95_duration_seconds=status.p95_duration_seconds,
    )


def client_to_pb(view: ClientView) -> pb.FleetClient:
    """One client of the fleet view."""
    state = view.state
    client = pb.FleetClient(
        client_id=state.client_id,
        host=state.host,
        pid=state.pid,
        client_version=state.client_version,
        applied_revision=state.applied_revision,
        silent=view.silent,
        stages=[stage_report_to_pb(s) for s in view.stages],
    )
    if (ts := timestamp(state.last_report_time)) is not None:
        client.last_report_time.CopyFrom(ts)
    return client


def fleet_status_to_pb(status: FleetStatus) -> pb.GetFleetStatusResponse:
    """GetFleetStatus's answer."""
    return pb.GetFleetStatusResponse(
        stages=[
            pb.StageFleetStatus(
                stage_type=stage_to_pb(s.stage_type),
                revision=s.revision,
                revisions=[_revision_to_pb(r) for r in s.revisions],
                silent_clients=s.silent_clients,
                routes=[route_status_to_pb(r) for r in s.routes],
            )
            for s in status.stages
        ],
        clients=[client_to_pb(c) for c in status.clients],
        head_revision=status.head_revision,
        window_seconds=status.window_seconds,
    )


def fill_watcher(info: pb.WatcherInfo, view: ClientView) -> None:
    """Add a client's reported state to its WatcherInfo (ListWatchers)."""
    state = view.state
    info.applied_revision = state.applied_revision
    refused = [s for s in state.stages if s.nack_revision]
    if refused:
        newest = max(refused, key=lambda s: s.nack_revision)
        info.nack_revision = newest.nack_revision
        info.nack_reason = newest.nack_reason
    if (ts := timestamp(state.last_report_time)) is not None:
        info.last_report_time.CopyFrom(ts)
    del info.stages[:]
    info.stages.extend(stage_report_to_pb(s) for s in view.stages)
