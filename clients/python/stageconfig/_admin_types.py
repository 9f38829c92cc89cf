"""What the admin calls return: frozen dataclasses, re-exported by ``stageconfig.admin``.

Proto messages never reach these; ``_admin_convert`` builds them. A value a newer server
sends that this client does not know never makes them fail: statuses and reasons are
UNSPECIFIED, a stage this client cannot name is left out of a list, and a provider kind
it cannot name is kept as its number (``unknown_provider_kind``) so the stage still shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from stageconfig._admin_routes import RouteHealth, RouteReport, RouteView, route_health_line
from stageconfig._types import (
    ChangeReason,
    ConfigSource,
    ConfigStatus,
    ProviderKind,
    StageConfig,
    StageType,
)


def provider_name(kind: ProviderKind | None, unknown_number: int) -> str:
    """How a provider kind is shown: its name, or ``UNKNOWN(99)`` for a number only a
    newer server knows."""
    return kind.value if kind is not None else f"UNKNOWN({unknown_number})"


@dataclass(frozen=True, slots=True)
class StageView:
    """One stage as an admin sees it (ListConfigs)."""

    stage_type: StageType
    source: ConfigSource
    """DATABASE, FALLBACK (legacy env of the server) or UNCONFIGURED (UNSPECIFIED: a
    source this client does not know)."""
    config: StageConfig | None
    """The config, key masked; None when the stage is UNCONFIGURED, or when its provider
    kind is one this client does not know (``unknown_provider_kind``)."""
    models: tuple[str, ...]
    """The cached model list (models_cache); empty unless stored."""
    allowed_providers: tuple[ProviderKind, ...]
    """The providers this stage may use (those this client knows)."""
    revision: int = 0
    """The stage's stored revision (0: nothing stored), what ``expected_revision`` wants."""
    unknown_provider_kind: int = 0
    """The number of the stored provider kind when this client does not know it (a newer
    server); 0 otherwise."""
    routes: tuple[RouteView, ...] = ()
    """The stored fallback routes, in order, keys masked."""

    @property
    def provider(self) -> str:
        """The stored provider's name, ``UNKNOWN(n)`` for one this client does not know,
        empty when nothing is configured."""
        if self.config is not None:
            return self.config.provider_kind.value
        return provider_name(None, self.unknown_provider_kind) if self.unknown_provider_kind else ""


@dataclass(frozen=True, slots=True)
class ConfigOverview:
    """Every stage (ListConfigs) and the server's head revision."""

    stages: tuple[StageView, ...]
    head_revision: int

    def stage(self, stage: StageType | str) -> StageView:
        """The view of one stage."""
        wanted = StageType(stage)
        for view in self.stages:
            if view.stage_type is wanted:
                return view
        raise KeyError(wanted.value)


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """What UpdateConfig stored (or, with ``validate_only``, would store)."""

    config: StageConfig
    """The config, key masked."""
    models: tuple[str, ...]
    """The models the provider offers for this key."""
    written: bool
    """False with ``validate_only``."""
    routes: tuple[RouteView, ...] = ()
    """The fallback routes stored (or that would be), keys masked."""


@dataclass(frozen=True, slots=True)
class ModelList:
    """A stage's cached model list (ListModels)."""

    models: tuple[str, ...]
    updated_at: datetime | None
    selected_model: str
    provider_kind: ProviderKind | None
    """None when the provider kind is one this client does not know
    (``unknown_provider_kind`` has its number)."""
    status: ConfigStatus
    status_reason: str
    unknown_provider_kind: int = 0
    """The number of a provider kind this client does not know; 0 otherwise."""

    @property
    def provider(self) -> str:
        """The provider's name, or ``UNKNOWN(n)``."""
        return provider_name(self.provider_kind, self.unknown_provider_kind)


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """What one stage's model refresh found (RefreshModels)."""

    stage_type: StageType
    status: ConfigStatus
    status_reason: str
    models: tuple[str, ...]
    selected_model: str
    replaced_model: str
    """The model that vanished and was replaced; empty when none was."""
    revision: int
    """The stage's revision after the refresh."""


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field's old and new value in a history entry (keys masked)."""

    field: str
    old_value: str
    new_value: str


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One revision of the log."""

    revision: int
    stage_type: StageType
    time: datetime | None
    actor: str
    """The token name that made the change, or the sync's name."""
    reason: ChangeReason
    changes: tuple[FieldChange, ...]
    comment: str


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of history, newest first; pass ``next_page_token`` for the next one."""

    entries: tuple[HistoryEntry, ...]
    """The page's entries (those of stages this client knows)."""
    next_page_token: str
    """Empty on the last page."""


def _no_causes() -> Mapping[str, int]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class TaskOutcomes:
    """The tasks a client ran with one stage at one revision (from its reports)."""

    revision: int
    """The stage's revision the tasks used."""
    succeeded: int
    failed: int
    retried: int
    """Tasks that failed and will be retried (counted apart from ``failed``)."""
    failures_by_cause: Mapping[str, int] = field(default_factory=_no_causes)
    """Failures by cause (an exception class name, a provider cause), as the worker
    wrote it: show it with care."""
    duration_buckets: tuple[int, ...] = ()
    """Task durations as counts per bucket of the contract's 14 duration buckets; empty
    when no duration was recorded."""


@dataclass(frozen=True, slots=True)
class StageReport:
    """One stage as a client last reported it."""

    stage_type: StageType
    revision: int
    """The revision of the stage's config the client uses (0: none)."""
    nack_revision: int = 0
    """The newest revision of this stage the client refused (0: none)."""
    nack_reason: str = ""
    """Why it refused it, as the worker wrote it."""
    outcomes: tuple[TaskOutcomes, ...] = ()
    """Task outcomes over the last window, one entry per revision."""
    routes: tuple[RouteReport, ...] = ()
    """Each route's breaker and counts in the client (fallback routing)."""


@dataclass(frozen=True, slots=True)
class WatcherInfo:
    """One connected WatchConfig stream (ListWatchers) and, when the client reports
    (ReportStatus), what it applied and refused."""

    client_id: str
    peer: str
    actor: str
    stage_types: tuple[StageType, ...]
    """The stages it watches (those this client knows)."""
    connected_since: datetime | None
    last_revision: int
    """The newest revision the stream has been sent."""
    client_version: str = ""
    """The version the client sent with WatchConfig (empty: an older client)."""
    applied_revision: int = 0
    """The newest revision the client says it applied — not what it was sent (0: it has
    not reported)."""
    nack_revision: int = 0
    """The newest revision it refused, any stage (0: none)."""
    nack_reason: str = ""
    """Why it refused ``nack_revision``, as the worker wrote it."""
    last_report_time: datetime | None = None
    """When its last report arrived (None: it never reported)."""
    stages: tuple[StageReport, ...] = ()
    """Each stage as it last reported it, with its task outcomes over the last 15
    minutes (stages this client knows)."""


@dataclass(frozen=True, slots=True)
class WatcherList:
    """Every connected stream and the server's head revision."""

    watchers: tuple[WatcherInfo, ...]
    head_revision: int


@dataclass(frozen=True, slots=True)
class SnapshotEvent:
    """Every watched stage at one revision (the first event, or after a gap)."""

    revision: int
    configs: tuple[StageConfig, ...]


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One stage at a new revision."""

    revision: int
    config: StageConfig
    reason: ChangeReason


@dataclass(frozen=True, slots=True)
class HeartbeatEvent:
    """The stream is alive; the server is at ``head_revision``."""

    head_revision: int
    server_time: datetime | None


@dataclass(frozen=True, slots=True)
class RevisionFleetStatus:
    """One revision of one stage across the fleet (GetFleetStatus)."""

    revision: int
    clients: int
    """Clients holding this revision of the stage that still report (silent ones are
    counted apart, in ``StageFleetStatus.silent_clients``)."""
    nacked: int
    """Clients whose newest refusal of the stage is this revision."""
    nack_reasons: tuple[str, ...]
    """Their distinct reasons (at most 8), as the workers wrote them."""
    succeeded: int
    failed: int
    retried: int
    failure_rate: float
    """``failed / (succeeded + failed)`` within the window; 0 when no task finished."""
    failures_by_cause: Mapping[str, int] = field(default_factory=_no_causes)
    p50_duration_seconds: float = 0.0
    """The upper bound of the duration bucket holding the median (0: no duration)."""
    p95_duration_seconds: float = 0.0

    @property
    def finished(self) -> int:
        """Tasks that succeeded or failed within the window."""
        return self.succeeded + self.failed


@dataclass(frozen=True, slots=True)
class StageFleetStatus:
    """One stage across the fleet."""

    stage_type: StageType
    revision: int
    """The stage's current revision on the server (0: nothing stored)."""
    revisions: tuple[RevisionFleetStatus, ...]
    """Every revision some client holds, refused or ran tasks with, newest first."""
    silent_clients: int
    """Clients that reported this stage before but not within three report intervals:
    they are not counted as holding any revision."""
    routes: tuple[RouteHealth, ...] = ()
    """Each route's health across the reporting clients (route 0 is the primary)."""

    @property
    def route_health(self) -> str:
        """One line on the routes, e.g. ``POEM: primary GEMINI failing (QUOTA) on 12/12
        workers, serving from OPENAI`` ("" when no worker reported routes)."""
        return route_health_line(self.stage_type.value, self.routes)

    @property
    def reporting_clients(self) -> int:
        """Clients that hold some revision of the stage and still report."""
        return sum(r.clients for r in self.revisions)


@dataclass(frozen=True, slots=True)
class FleetClient:
    """One client that has reported."""

    client_id: str
    host: str
    pid: int
    client_version: str
    applied_revision: int
    last_report_time: datetime | None
    silent: bool
    """No report within three of its report intervals: it may be dead or cut off, so
    nothing it said before is taken as current."""
    stages: tuple[StageReport, ...]
    """Each stage as it last reported it, with its outcomes over the window."""


@dataclass(frozen=True, slots=True)
class FleetStatus:
    """What the fleet runs (GetFleetStatus): per stage the revisions in use, NACKs and
    task outcomes over ``window_seconds``, and every client that has reported."""

    stages: tuple[StageFleetStatus, ...]
    clients: tuple[FleetClient, ...]
    head_revision: int
    window_seconds: int

    def stage(self, stage: StageType | str) -> StageFleetStatus:
        """The fleet status of one stage (KeyError when the answer does not hold it)."""
        wanted = StageType(stage)
        for status in self.stages:
            if status.stage_type is wanted:
                return status
        raise KeyError(wanted.value)

    @property
    def silent_clients(self) -> tuple[FleetClient, ...]:
        """The clients that stopped reporting."""
        return tuple(c for c in self.clients if c.silent)


WatchEvent = SnapshotEvent | ChangeEvent | HeartbeatEvent
"""What ``AdminClient.watch`` yields."""
