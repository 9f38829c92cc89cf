"""Fleet truth, the arithmetic: stored client states and outcome buckets → the fleet
view per stage and revision (GetFleetStatus) and each client's stages over a window
(ListWatchers, the clients list). Pure functions of their inputs and ``now``.

Silence rules everything a view counts as live: a client with no report within three of
its report intervals holds nothing and refused nothing as far as ``clients`` and
``nacked`` go (it is counted in ``silent_clients``); the tasks it ran within the window
still count, because they happened.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from stageconfig_server.domain import StageType
from stageconfig_server.fleet import (
    ClientState,
    OutcomeBucket,
    Outcomes,
    StageReport,
    StageState,
    merge_outcomes,
    percentile_seconds,
)
from stageconfig_server.fleet_routes import RouteStatus, route_statuses
from stageconfig_server.rollout_types import RolloutRecord, Side

MAX_NACK_REASONS = 8
"""Distinct refusal reasons shown per revision."""


@dataclass(frozen=True, slots=True)
class RevisionStatus:
    """One revision of one stage across the fleet."""

    revision: int
    clients: int = 0
    nacked: int = 0
    nack_reasons: tuple[str, ...] = ()
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    failures_by_cause: Mapping[str, int] = field(default_factory=dict)
    p50_duration_seconds: float = 0.0
    p95_duration_seconds: float = 0.0

    @property
    def failure_rate(self) -> float:
        """failed / (succeeded + failed); 0 when no task finished."""
        finished = self.succeeded + self.failed
        return self.failed / finished if finished else 0.0


@dataclass(frozen=True, slots=True)
class StageStatus:
    """One stage across the fleet: its server revision and every revision in play."""

    stage_type: StageType
    revision: int
    revisions: tuple[RevisionStatus, ...]
    silent_clients: int
    routes: tuple[RouteStatus, ...] = ()
    """Each route's health across the clients that still report."""


@dataclass(frozen=True, slots=True)
class ClientView:
    """A client as the fleet view shows it: latest state, silence, window outcomes."""

    state: ClientState
    silent: bool
    stages: tuple[StageReport, ...]


@dataclass(frozen=True, slots=True)
class FleetStatus:
    """GetFleetStatus's answer in domain terms."""

    stages: tuple[StageStatus, ...]
    clients: tuple[ClientView, ...]
    head_revision: int
    window_seconds: int


def fleet_status(
    clients: Sequence[ClientState],
    buckets: Iterable[OutcomeBucket],
    *,
    now: datetime,
    stages: Sequence[StageType],
    stage_revisions: Mapping[StageType, int],
    head_revision: int,
    window_seconds: int,
) -> FleetStatus:
    """The fleet per stage (of ``stages``) and revision, plus every client."""
    summed = sum_by_client(buckets)
    silent = {c.client_id for c in clients if c.silent(now)}
    stage_views = tuple(
        _stage_status(stage, stage_revisions.get(stage, 0), clients, silent, summed)
        for stage in stages
    )
    views = tuple(
        ClientView(c, c.client_id in silent, client_stages(c, summed, stages)) for c in clients
    )
    return FleetStatus(stage_views, views, head_revision, window_seconds)


_Summed = dict[tuple[str, StageType], dict[int, Outcomes]]
"""(client_id, stage) → revision → outcomes summed over the window."""


def sum_by_client(buckets: Iterable[OutcomeBucket]) -> _Summed:
    """Outcome buckets summed per (client, stage) and revision."""
    summed: _Summed = {}
    for bucket in buckets:
        per_revision = summed.setdefault((bucket.client_id, bucket.stage_type), {})
        revision = bucket.outcomes.revision
        known = per_revision.get(revision)
        per_revision[revision] = (
            bucket.outcomes if known is None else merge_outcomes(known, bucket.outcomes)
        )
    return summed


def client_stages(
    client: ClientState, summed: _Summed, stages: Sequence[StageType]
) -> tuple[StageReport, ...]:
    """The client's stages (of ``stages``) as last reported, each with its outcomes
    over the window, newest revision first; a stage it only ran tasks with is listed
    too."""
    states = {s.stage_type: s for s in client.stages}
    reports = []
    for stage in stages:
        outcomes = summed.get((client.client_id, stage), {})
        state = states.get(stage)
        if state is None and not outcomes:
            continue
        reports.append(
            StageReport(
                state=state or StageState(stage),
                outcomes=tuple(outcomes[r] for r in sorted(outcomes, reverse=True)),
            )
        )
    return tuple(reports)


def _stage_status(
    stage: StageType,
    server_revision: int,
    clients: Sequence[ClientState],
    silent: set[str],
    summed: _Summed,
) -> StageStatus:
    holders: dict[int, int] = {}
    nacks: dict[int, list[str]] = {}
    routes = []
    silent_count = 0
    for client in clients:
        state = next((s for s in client.stages if s.stage_type == stage), None)
        if state is None:
            continue
        if client.client_id in silent:
            silent_count += 1
            continue
        routes.append(state.routes)
        if state.revision:
            holders[state.revision] = holders.get(state.revision, 0) + 1
        if state.nack_revision:
            nacks.setdefault(state.nack_revision, []).append(state.nack_reason)
    totals: dict[int, Outcomes] = {}
    for (_client, summed_stage), per_revision in summed.items():
        if summed_stage is not stage:
            continue
        for revision, outcomes in per_revision.items():
            known = totals.get(revision)
            totals[revision] = outcomes if known is None else merge_outcomes(known, outcomes)
    revisions = sorted(set(holders) | set(nacks) | set(totals), reverse=True)
    return StageStatus(
        stage_type=stage,
        revision=server_revision,
        revisions=tuple(
            _revision_status(r, holders.get(r, 0), nacks.get(r, []), totals.get(r))
            for r in revisions
        ),
        silent_clients=silent_count,
        routes=route_statuses(routes),
    )


def _revision_status(
    revision: int, holders: int, reasons: list[str], outcomes: Outcomes | None
) -> RevisionStatus:
    distinct = tuple(sorted({r for r in reasons if r}))[:MAX_NACK_REASONS]
    if outcomes is None:
        return RevisionStatus(revision, holders, len(reasons), distinct)
    return RevisionStatus(
        revision=revision,
        clients=holders,
        nacked=len(reasons),
        nack_reasons=distinct,
        succeeded=outcomes.succeeded,
        failed=outcomes.failed,
        retried=outcomes.retried,
        failures_by_cause=dict(outcomes.failures_by_cause),
        p50_duration_seconds=percentile_seconds(outcomes.duration_buckets, 0.5),
        p95_duration_seconds=percentile_seconds(outcomes.duration_buckets, 0.95),
    )


def rollout_sides(
    record: RolloutRecord,
    clients: Sequence[ClientState],
    buckets: Iterable[OutcomeBucket],
    *,
    now: datetime,
    connected: Iterable[str] = (),
) -> tuple[Side, Side]:
    """A rollout's canary and stable sides: the tasks each ran with its revision
    (``buckets``: the stage's, since the rollout started), and the clients on each side.
    A connected watcher is placed by cohort membership (it receives the candidate as
    soon as the rollout starts); a client that reports without a stream of its own — a
    worker process behind a host agent, whose side is the agent's — is placed by the
    revision it reports holding."""
    cohort = record.cohort
    tasks = {record.candidate_revision: [0, 0], record.stable_revision: [0, 0]}
    for bucket in buckets:
        counts = tasks.get(bucket.outcomes.revision)
        if bucket.stage_type is record.stage_type and counts is not None:
            counts[0] += bucket.outcomes.succeeded
            counts[1] += bucket.outcomes.failed
    held = {
        c.client_id: stage.revision
        for c in clients
        if not c.silent(now)
        for stage in c.stages
        if stage.stage_type is record.stage_type
    }
    watching = set(connected)
    members = watching | held.keys()
    canary_clients = sum(
        1
        for client_id in members
        if (
            cohort.contains(client_id)
            if client_id in watching
            else held[client_id] == record.candidate_revision
        )
    )
    canary, stable = tasks[record.candidate_revision], tasks[record.stable_revision]
    return (
        Side(record.candidate_revision, canary_clients, canary[0], canary[1]),
        Side(record.stable_revision, len(members) - canary_clients, stable[0], stable[1]),
    )
