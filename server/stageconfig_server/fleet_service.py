"""Fleet truth, the service: takes workers' reports (ReportStatus), answers the fleet
view (GetFleetStatus) and each watcher's reported state (ListWatchers), and prunes
what is older than the largest window. Storage is the ``FleetStore`` Protocol
(``db.fleet.FleetReports``); the revision head and the catch-up with other replicas
come from the config service. No gRPC, no SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from stageconfig_server.domain import StageType
from stageconfig_server.errors import InvalidArgument, StorageUnavailable
from stageconfig_server.fleet import (
    MAX_PROCESSES,
    ClientState,
    OutcomeBucket,
    StatusReport,
    check_report,
    highest_revision,
    nested_field,
    redact_report,
)
from stageconfig_server.fleet_aggregate import (
    ClientView,
    FleetStatus,
    client_stages,
    fleet_status,
    rollout_sides,
    sum_by_client,
)
from stageconfig_server.rollout_types import RolloutRecord, Side

log = logging.getLogger(__name__)

BUCKET = timedelta(minutes=1)
"""Outcomes are summed per client, stage, revision and minute."""
DEFAULT_WINDOW_SECONDS = 900
MAX_WINDOW_SECONDS = 7 * 24 * 3600
"""The largest window; buckets and clients silent for longer are pruned."""
WATCHER_WINDOW_SECONDS = 900
"""ListWatchers shows each client's outcomes over the last 15 minutes."""
PRUNE_EVERY_SECONDS = 600.0
REFRESH_EVERY_SECONDS = 15.0
"""How often the background task recomputes ``latest`` (the metrics' fleet view)."""


class FleetStore(Protocol):
    """What fleet truth needs of storage."""

    async def record(self, report: StatusReport, now: datetime, bucket: timedelta) -> bool:
        """Store a report; False when its (client_id, sequence) was already counted."""
        ...

    async def record_many(
        self, reports: Sequence[StatusReport], now: datetime, bucket: timedelta
    ) -> list[bool]:
        """Store reports in one transaction; per report, False when already counted."""
        ...

    async def clients(self, client_ids: Collection[str] | None = None) -> list[ClientState]:
        """Stored clients (all, or those of ``client_ids``)."""
        ...

    async def outcomes_since(
        self,
        since: datetime,
        stage: StageType | None = None,
        client_ids: Collection[str] | None = None,
    ) -> list[OutcomeBucket]:
        """Outcome buckets starting at or after ``since``."""
        ...

    async def prune(self, before: datetime) -> int:
        """Delete buckets and silent clients older than ``before``."""
        ...


ReportListener = Callable[[StatusReport, bool], None]
"""Called with every checked report and whether it was counted (False: a retry)."""


class FleetService:
    """Reports in, fleet views out."""

    def __init__(
        self,
        store: FleetStore,
        *,
        head_revision: Callable[[], int],
        catch_up: Callable[[], Awaitable[object]],
        stage_revisions: Callable[[], dict[StageType, int]],
        secrets: Callable[[], Iterable[str]] = tuple,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._store = store
        self._head = head_revision
        self._catch_up = catch_up
        self._stage_revisions = stage_revisions
        self._secrets = secrets
        self._now = clock or (lambda: datetime.now(UTC))
        self._listeners: list[ReportListener] = []
        self._pruner: asyncio.Task[None] | None = None
        self.latest: FleetStatus | None = None
        """The newest default-window fleet view computed, without its clients (the
        metrics read its stages)."""

    def add_listener(self, listener: ReportListener) -> None:
        """Call ``listener(report, counted)`` after every stored or retried report."""
        self._listeners.append(listener)

    async def report(self, report: StatusReport) -> bool:
        """Check and store a report; False when it was a duplicate (nothing counted)."""
        return (await self.report_batch(report, ()))[0]

    async def report_batch(
        self, report: StatusReport | None, processes: Sequence[StatusReport]
    ) -> tuple[bool, list[bool]]:
        """Check ``report`` (None: the request only carries others) and each of a host
        agent's ``processes``, then store them all in one transaction; whether each was
        counted (False: a retry). One bad entry refuses the whole batch, naming it
        (``processes[3].stages[0].revision``); nothing is stored then."""
        if len(processes) > MAX_PROCESSES:
            raise InvalidArgument("processes", f"at most {MAX_PROCESSES} entries")
        reports = ([report] if report is not None else []) + list(processes)
        if not reports:
            raise InvalidArgument("client_id", "the value is required")
        head = self._head()
        if max(highest_revision(r) for r in reports) > head:
            # Another replica may have committed revisions this one has not applied yet.
            await self._catch_up()
            head = self._head()
        if report is not None:
            check_report(report, head)
        for i, process in enumerate(processes):
            with nested_field(f"processes[{i}]"):
                check_report(process, head)
        secrets = list(self._secrets())
        reports = [redact_report(r, secrets) for r in reports]
        counted = await self._store.record_many(reports, self._now(), BUCKET)
        for checked, was_counted in zip(reports, counted, strict=True):
            for listener in self._listeners:
                listener(checked, was_counted)
        if report is None:
            return False, counted
        return counted[0], counted[1:]

    async def status(self, stage: StageType | None, window_seconds: int) -> FleetStatus:
        """The fleet per stage and revision over the window (0 → 15 minutes)."""
        if not 0 <= window_seconds <= MAX_WINDOW_SECONDS:
            raise InvalidArgument(
                "window_seconds",
                f"must be 0 (meaning {DEFAULT_WINDOW_SECONDS}) or 1…{MAX_WINDOW_SECONDS}",
            )
        window = window_seconds or DEFAULT_WINDOW_SECONDS
        now = self._now()
        clients = await self._store.clients()
        buckets = await self._store.outcomes_since(_window_start(now, window), stage)
        view = fleet_status(
            clients,
            buckets,
            now=now,
            stages=[stage] if stage is not None else list(StageType),
            stage_revisions=self._stage_revisions(),
            head_revision=self._head(),
            window_seconds=window,
        )
        if stage is None and window == DEFAULT_WINDOW_SECONDS:
            # The metrics read the stages only: holding every client's view between
            # refreshes would keep a few hundred bytes per worker process alive.
            self.latest = replace(view, clients=())
        return view

    async def client_views(self, client_ids: Collection[str]) -> dict[str, ClientView]:
        """The reported state of each of ``client_ids`` that has reported, with its
        outcomes over the last 15 minutes (for ListWatchers).

        Best effort: without the database the connections are still worth listing, so
        this answers nothing rather than fail the call.
        """
        if not client_ids:
            return {}
        now = self._now()
        try:
            clients = await self._store.clients(client_ids)
            if not clients:
                return {}
            summed = sum_by_client(
                await self._store.outcomes_since(
                    _window_start(now, WATCHER_WINDOW_SECONDS),
                    client_ids=[c.client_id for c in clients],
                )
            )
        except StorageUnavailable as error:
            log.warning("ListWatchers without the fleet reports: %s", error.message)
            return {}
        stages = list(StageType)
        return {
            c.client_id: ClientView(c, c.silent(now), client_stages(c, summed, stages))
            for c in clients
        }

    async def rollout_sides(
        self, record: RolloutRecord, connected: Iterable[str] = ()
    ) -> tuple[Side, Side]:
        """A rollout's canary and stable sides from the reports since it started
        (``connected``: the client ids watching its stage here)."""
        now = self._now()
        clients = await self._store.clients()
        buckets = await self._store.outcomes_since(
            _window_start(record.started_at, 0), record.stage_type
        )
        return rollout_sides(record, clients, buckets, now=now, connected=connected)

    async def prune(self) -> int:
        """Forget buckets and clients older than the largest window."""
        return await self._store.prune(self._now() - timedelta(seconds=MAX_WINDOW_SECONDS))

    def start(self, refresh_seconds: float = REFRESH_EVERY_SECONDS) -> None:
        """Refresh ``latest`` (for the metrics) and prune, in the background."""
        self._pruner = asyncio.create_task(self._run(refresh_seconds), name="fleet-refresh")

    async def stop(self) -> None:
        """Stop the background pruning."""
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None

    async def _run(self, refresh_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        while True:
            try:
                if loop.time() >= next_prune:
                    await self.prune()
                    next_prune = loop.time() + PRUNE_EVERY_SECONDS
                await self.status(None, DEFAULT_WINDOW_SECONDS)
            except StorageUnavailable as error:
                log.warning("fleet refresh skipped: %s", error.message)
            await asyncio.sleep(refresh_seconds)


def _window_start(now: datetime, window_seconds: int) -> datetime:
    """The first bucket a window counts: the one holding ``now - window``."""
    start = now - timedelta(seconds=window_seconds)
    epoch = int(start.timestamp())
    step = int(BUCKET.total_seconds())
    return datetime.fromtimestamp(epoch - epoch % step, tz=UTC)
