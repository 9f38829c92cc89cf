"""Fleet truth, the domain half: what a worker reports (``StatusReport``) and the
strict check every report passes before anything is stored.

A report is input from the fleet: every string and list is bounded here, every count
must be ≥ 0, every revision must exist on the server. The check raises
``InvalidArgument`` naming the proto field path (``stages[1].outcomes[0].failed``) and
never trims anything silently. Aggregation lives in ``fleet_aggregate``; storage behind
the ``FleetStore`` Protocol in ``fleet_service``. No gRPC, no SQL.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime

from stageconfig_contract.facts import DURATION_BUCKET_BOUNDS_SECONDS
from stageconfig_server.domain import StageType
from stageconfig_server.errors import InvalidArgument
from stageconfig_server.fleet_routes import RouteHealth, check_routes
from stageconfig_server.redaction import redact

DURATION_BOUNDS: tuple[float, ...] = DURATION_BUCKET_BOUNDS_SECONDS
"""Upper bounds (seconds) of the duration buckets, the contract's; a 14th bucket counts
longer tasks."""
DURATION_BUCKETS = len(DURATION_BOUNDS) + 1

MAX_CLIENT_ID_LENGTH = 128
MAX_HOST_LENGTH = 255
MAX_CLIENT_VERSION_LENGTH = 64
MAX_OUTCOMES_PER_STAGE = 16
MAX_CAUSES = 32
MAX_CAUSE_LENGTH = 64
MAX_NACK_REASON_LENGTH = 512
MAX_REPORT_INTERVAL_SECONDS = 3600
DEFAULT_REPORT_INTERVAL_SECONDS = 30
MAX_COUNT = 2**53
"""Largest count one report may carry (JSON-safe; far above any real interval)."""
MAX_REPORT_BYTES = 256 * 1024
"""Largest encoded ReportStatusRequest. The field bounds above keep a valid report
well below it (4 stages x 16 outcomes x 32 causes ≈ 170 KiB at worst)."""
MAX_PROCESSES = 1024
"""Worker processes' reports one request may carry (``ReportStatusRequest.processes``)."""
OTHER_CAUSE = "(other causes)"
"""Where causes beyond the bound of a stored bucket are counted (reports summed into one
minute may name more than 32 causes between them)."""
SILENT_AFTER_INTERVALS = 3
"""A client is silent after this many of its report intervals without a report."""


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Task outcomes of one stage at one revision (summable)."""

    revision: int
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    failures_by_cause: Mapping[str, int] = field(default_factory=dict)
    duration_buckets: tuple[int, ...] = ()
    """Empty, or exactly ``DURATION_BUCKETS`` counts."""

    @property
    def empty(self) -> bool:
        """Whether no task is counted."""
        return not (self.succeeded or self.failed or self.retried or any(self.duration_buckets))


@dataclass(frozen=True, slots=True)
class StageState:
    """One stage as a client holds it: the revision in use and its newest refusal."""

    stage_type: StageType
    revision: int = 0
    nack_revision: int = 0
    nack_reason: str = ""
    routes: tuple[RouteHealth, ...] = ()
    """Each route's health in the client (fallback routing, ``fleet_routes``)."""


@dataclass(frozen=True, slots=True)
class StageReport:
    """A stage in a report: its state plus the outcomes since the previous report."""

    state: StageState
    outcomes: tuple[Outcomes, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusReport:
    """One ReportStatus call in domain terms (checked by ``check_report``)."""

    client_id: str
    sequence: int
    applied_revision: int = 0
    host: str = ""
    pid: int = 0
    client_version: str = ""
    stages: tuple[StageReport, ...] = ()
    report_interval_seconds: int = 0
    """0 means ``DEFAULT_REPORT_INTERVAL_SECONDS``."""

    @property
    def interval_seconds(self) -> int:
        """The effective report interval."""
        return self.report_interval_seconds or DEFAULT_REPORT_INTERVAL_SECONDS


@dataclass(frozen=True, slots=True)
class ClientState:
    """A client's latest report as stored (outcomes are kept apart, in buckets)."""

    client_id: str
    host: str
    pid: int
    client_version: str
    applied_revision: int
    last_report_time: datetime
    report_interval_seconds: int
    stages: tuple[StageState, ...]

    def silent(self, now: datetime) -> bool:
        """No report within ``SILENT_AFTER_INTERVALS`` of its report intervals."""
        quiet = (now - self.last_report_time).total_seconds()
        return quiet > SILENT_AFTER_INTERVALS * self.report_interval_seconds


@dataclass(frozen=True, slots=True)
class OutcomeBucket:
    """The outcomes one client reported for one stage and revision in one time bucket."""

    client_id: str
    stage_type: StageType
    start: datetime
    outcomes: Outcomes


def check_report(report: StatusReport, head_revision: int) -> None:
    """Raise InvalidArgument (naming the field) unless ``report`` is acceptable.

    ``head_revision`` is the newest revision the server knows: a report may not claim a
    revision above it (the caller catches up with other replicas before refusing).
    """
    _text("client_id", report.client_id, MAX_CLIENT_ID_LENGTH, required=True)
    _text("host", report.host, MAX_HOST_LENGTH)
    _text("client_version", report.client_version, MAX_CLIENT_VERSION_LENGTH)
    if report.pid < 0:
        raise InvalidArgument("pid", "must be ≥ 0")
    if report.sequence < 1:
        raise InvalidArgument("sequence", "is required: a number ≥ 1 that grows with every report")
    _revision("applied_revision", report.applied_revision, head_revision)
    interval = report.report_interval_seconds
    if interval != 0 and not 1 <= interval <= MAX_REPORT_INTERVAL_SECONDS:
        raise InvalidArgument(
            "report_interval_seconds",
            f"must be 0 (meaning {DEFAULT_REPORT_INTERVAL_SECONDS}) "
            f"or 1…{MAX_REPORT_INTERVAL_SECONDS}",
        )
    seen: set[StageType] = set()
    for i, stage in enumerate(report.stages):
        where = f"stages[{i}]"
        if stage.state.stage_type in seen:
            raise InvalidArgument(f"{where}.stage_type", "each stage may appear only once")
        seen.add(stage.state.stage_type)
        _check_stage(where, stage, head_revision)


@contextmanager
def nested_field(prefix: str) -> Iterator[None]:
    """Prefix the field of an ``InvalidArgument`` raised inside (``processes[3].``)."""
    try:
        yield
    except InvalidArgument as error:
        raise InvalidArgument(f"{prefix}.{error.field}", error.description) from None


def _check_stage(where: str, stage: StageReport, head: int) -> None:
    state = stage.state
    _revision(f"{where}.revision", state.revision, head)
    _revision(f"{where}.nack_revision", state.nack_revision, head)
    reason = state.nack_reason
    if len(reason) > MAX_NACK_REASON_LENGTH:
        raise InvalidArgument(
            f"{where}.nack_reason", f"must be at most {MAX_NACK_REASON_LENGTH} characters"
        )
    # An exception message may span lines; any other control character is refused.
    if not reason.replace("\n", " ").replace("\t", " ").isprintable():
        raise InvalidArgument(f"{where}.nack_reason", "must be printable text")
    if reason and not state.nack_revision:
        raise InvalidArgument(f"{where}.nack_reason", "given without a nack_revision")
    check_routes(where, state.routes, _count)
    if len(stage.outcomes) > MAX_OUTCOMES_PER_STAGE:
        raise InvalidArgument(
            f"{where}.outcomes", f"at most {MAX_OUTCOMES_PER_STAGE} entries (one per revision)"
        )
    revisions: set[int] = set()
    for j, outcome in enumerate(stage.outcomes):
        at = f"{where}.outcomes[{j}]"
        _revision(f"{at}.revision", outcome.revision, head)
        if outcome.revision in revisions:
            raise InvalidArgument(f"{at}.revision", "one entry per revision")
        revisions.add(outcome.revision)
        _check_outcomes(at, outcome)


def _check_outcomes(at: str, outcome: Outcomes) -> None:
    for name in ("succeeded", "failed", "retried"):
        _count(f"{at}.{name}", getattr(outcome, name))
    causes = outcome.failures_by_cause
    if len(causes) > MAX_CAUSES:
        raise InvalidArgument(f"{at}.failures_by_cause", f"at most {MAX_CAUSES} causes")
    for cause, count in causes.items():
        _text(f"{at}.failures_by_cause", cause, MAX_CAUSE_LENGTH, required=True, what="a cause")
        _count(f"{at}.failures_by_cause", count)
    buckets = outcome.duration_buckets
    if buckets and len(buckets) != DURATION_BUCKETS:
        raise InvalidArgument(
            f"{at}.duration_buckets", f"must be empty or exactly {DURATION_BUCKETS} counts"
        )
    for count in buckets:
        _count(f"{at}.duration_buckets", count)


def _text(
    name: str, value: str, limit: int, *, required: bool = False, what: str = "the value"
) -> None:
    if not value:
        if required:
            raise InvalidArgument(name, f"{what} is required")
        return
    if len(value) > limit:
        raise InvalidArgument(name, f"{what} must be at most {limit} characters")
    if not value.isprintable():
        raise InvalidArgument(name, f"{what} must be printable text")


def _count(name: str, value: int) -> None:
    if value < 0:
        raise InvalidArgument(name, "counts must be ≥ 0")
    if value > MAX_COUNT:
        raise InvalidArgument(name, f"counts must be at most {MAX_COUNT}")


def _revision(name: str, value: int, head: int) -> None:
    if value < 0:
        raise InvalidArgument(name, "must be ≥ 0")
    if value > head:
        raise InvalidArgument(name, f"revision {value} is above the server's head ({head})")


def highest_revision(report: StatusReport) -> int:
    """The highest revision anything in ``report`` names (to catch up before checking)."""
    values: list[int] = [report.applied_revision]
    for stage in report.stages:
        values += [stage.state.revision, stage.state.nack_revision]
        values += [o.revision for o in stage.outcomes]
    return max(values)


def merge_outcomes(a: Outcomes, b: Outcomes, max_causes: int | None = None) -> Outcomes:
    """The sum of two outcomes of the same revision.

    With ``max_causes``, causes beyond that many (the least frequent) fold into
    ``OTHER_CAUSE``, so a stored bucket stays bounded however many reports it sums.
    """
    causes = dict(a.failures_by_cause)
    for cause, count in b.failures_by_cause.items():
        causes[cause] = causes.get(cause, 0) + count
    if max_causes is not None and len(causes) > max_causes:
        ranked = sorted(causes.items(), key=lambda item: (-item[1], item[0]))
        kept = dict(ranked[: max_causes - 1])
        kept[OTHER_CAUSE] = kept.get(OTHER_CAUSE, 0) + sum(c for _, c in ranked[max_causes - 1 :])
        causes = kept
    return Outcomes(
        revision=a.revision,
        succeeded=a.succeeded + b.succeeded,
        failed=a.failed + b.failed,
        retried=a.retried + b.retried,
        failures_by_cause=causes,
        duration_buckets=_sum_buckets(a.duration_buckets, b.duration_buckets),
    )


def _sum_buckets(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    if not a:
        return tuple(b)
    if not b:
        return tuple(a)
    return tuple(x + y for x, y in zip(a, b, strict=True))


def percentile_seconds(buckets: Sequence[int], quantile: float) -> float:
    """The upper bound of the bucket holding ``quantile`` of the counted durations
    (0 with none). The overflow bucket answers the largest bound: "at least that"."""
    total = sum(buckets)
    if total <= 0:
        return 0.0
    rank = max(1, math.ceil(quantile * total))
    cumulative = 0
    for i, count in enumerate(buckets):
        cumulative += count
        if cumulative >= rank:
            return DURATION_BOUNDS[min(i, len(DURATION_BOUNDS) - 1)]
    return DURATION_BOUNDS[-1]


def redact_report(report: StatusReport, secrets: Iterable[str]) -> StatusReport:
    """``report`` with every known key taken out of its free text (refusal reasons and
    cause names): a validator's exception message may quote the config it refused, and
    these texts are shown to admins."""
    keys = [k for k in secrets if k]
    if not keys:
        return report

    def clean(text: str) -> str:
        for key in keys:
            text = redact(text, key)
        return text

    def stage(item: StageReport) -> StageReport:
        state = replace(item.state, nack_reason=clean(item.state.nack_reason))
        outcomes = tuple(
            replace(
                o,
                failures_by_cause=_merge_causes(
                    (clean(c), n) for c, n in o.failures_by_cause.items()
                ),
            )
            for o in item.outcomes
        )
        return StageReport(state, outcomes)

    return replace(report, stages=tuple(stage(s) for s in report.stages))


def _merge_causes(items: Iterable[tuple[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for cause, count in items:
        merged[cause] = merged.get(cause, 0) + count
    return merged
