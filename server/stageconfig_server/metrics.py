"""Prometheus metrics on ``STAGECONFIG_METRICS_ADDRESS``.

Every app has its own registry (tests run several servers in one process). Values that
are cheap to read at scrape time (watchers, revisions, cache ages) are collected then,
so nothing is updated on the hot path; latencies and counts are recorded as they
happen. No label ever carries a key or anything derived from one. The RPC metrics are
recorded by the transport (``rpc/instrumentation.py`` wraps each method once); this
module only owns them.

    stageconfig_watchers_connected                 gauge
    stageconfig_revision_head                      gauge
    stageconfig_watchers_min_revision_delivered    gauge (the laggiest watcher)
    stageconfig_watchers_behind_head               gauge (watchers not at the head)
    stageconfig_propagation_seconds                histogram: commit → written to a stream
    stageconfig_rpc_duration_seconds{method,code}  histogram (unary calls)
    stageconfig_rpc_streams_total{method,code}     counter (streams ended, by status)
    stageconfig_sync_results_total{provider,status} counter
    stageconfig_models_cache_age_seconds{stage}    gauge
    stageconfig_watchers_dropped_total             counter (slow readers dropped)
    stageconfig_refusals_total{kind}               counter (refused calls, by kind;
                                                   their log lines are rate-limited)
    stageconfig_fleet_clients{stage,revision}      gauge: reporting clients holding it
    stageconfig_fleet_nacks{stage,revision}        gauge: reporting clients refusing it
    stageconfig_fleet_silent_clients{stage}        gauge: clients gone silent
    stageconfig_fleet_task_outcomes_total{stage,revision,result} counter
    stageconfig_fleet_reports_total{result}        counter: counted / duplicate
    stageconfig_fleet_route_clients_open{stage,route_index,provider} gauge: reporting
                                                   clients whose breaker of the route is open
    stageconfig_fleet_route_total{stage,route_index,provider,event} counter: failovers
                                                   (calls that moved on from the route) and
                                                   breaker_opened, as workers reported them

The fleet gauges come from the shared database (refreshed every 15 s), so every
replica shows the whole fleet: take the max across replicas, not the sum. The fleet
counters count what this replica received: sum them. No client id is ever a label.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from stageconfig_server.broadcast import Broadcaster
from stageconfig_server.domain import ProviderKind
from stageconfig_server.fleet import StatusReport
from stageconfig_server.fleet_service import FleetService
from stageconfig_server.service import ConfigService, RefreshOutcome

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class RefusalCounts(Protocol):
    """Where refused calls are counted (the transport's ``RefusalLog``)."""

    def counts(self) -> Mapping[str, int]:
        """Refusals so far, by kind."""
        ...


class _CountsCollector(Collector):
    """Counters kept elsewhere (drops by the broadcaster, refusals by the transport),
    read at scrape time."""

    def __init__(self, broadcaster: Broadcaster, refusals: RefusalCounts | None) -> None:
        self._broadcaster = broadcaster
        self._refusals = refusals

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "stageconfig_watchers_dropped",
            "WatchConfig streams dropped because a write took longer than the send timeout.",
            value=self._broadcaster.watchers_dropped,
        )
        if self._refusals is not None:
            refused = CounterMetricFamily(
                "stageconfig_refusals",
                "Calls refused (auth, undecodable request, stream limit), by kind.",
                labels=["kind"],
            )
            for kind, count in sorted(self._refusals.counts().items()):
                refused.add_metric([kind], count)
            yield refused


class _StateCollector(Collector):
    """Reads the service and broadcaster at scrape time."""

    def __init__(self, service: ConfigService, broadcaster: Broadcaster) -> None:
        self._service = service
        self._broadcaster = broadcaster

    def collect(self) -> Iterator[GaugeMetricFamily]:
        watchers = self._broadcaster.watchers
        head = self._service.head_revision
        yield GaugeMetricFamily(
            "stageconfig_watchers_connected", "Connected WatchConfig streams.", value=len(watchers)
        )
        yield GaugeMetricFamily(
            "stageconfig_revision_head", "Newest revision applied by this server.", value=head
        )
        yield GaugeMetricFamily(
            "stageconfig_watchers_min_revision_delivered",
            "Lowest revision delivered to a connected watcher (head when none).",
            value=min((w.last_revision for w in watchers), default=head),
        )
        yield GaugeMetricFamily(
            "stageconfig_watchers_behind_head",
            "Connected watchers whose last delivered revision is below the head.",
            value=sum(1 for w in watchers if w.last_revision < head),
        )
        ages = GaugeMetricFamily(
            "stageconfig_models_cache_age_seconds",
            "Seconds since each stage's model list was fetched.",
            labels=["stage"],
        )
        now = datetime.now(UTC)
        for view in self._service.list_configs():
            config = view.config
            if config is not None and config.models_cache_updated_at is not None:
                age = (now - config.models_cache_updated_at).total_seconds()
                ages.add_metric([view.stage_type.value], max(age, 0.0))
        yield ages


class _FleetCollector(Collector):
    """Reads the fleet service's latest default-window view at scrape time."""

    def __init__(self, fleet: FleetService) -> None:
        self._fleet = fleet

    def collect(self) -> Iterator[GaugeMetricFamily]:
        clients = GaugeMetricFamily(
            "stageconfig_fleet_clients",
            "Reporting clients whose config of the stage is at the revision.",
            labels=["stage", "revision"],
        )
        nacks = GaugeMetricFamily(
            "stageconfig_fleet_nacks",
            "Reporting clients whose newest refusal of the stage is the revision.",
            labels=["stage", "revision"],
        )
        silent = GaugeMetricFamily(
            "stageconfig_fleet_silent_clients",
            "Clients that reported the stage before but not within three intervals.",
            labels=["stage"],
        )
        route_open = GaugeMetricFamily(
            "stageconfig_fleet_route_clients_open",
            "Reporting clients whose circuit breaker of the stage's route is open.",
            labels=["stage", "route_index", "provider"],
        )
        view = self._fleet.latest
        for stage in view.stages if view is not None else ():
            silent.add_metric([stage.stage_type.value], stage.silent_clients)
            for route in stage.routes:
                route_open.add_metric(
                    [
                        stage.stage_type.value,
                        str(route.route_index),
                        _provider(route.provider_kind),
                    ],
                    route.clients_open,
                )
            for revision in stage.revisions:
                labels = [stage.stage_type.value, str(revision.revision)]
                if revision.clients:
                    clients.add_metric(labels, revision.clients)
                if revision.nacked:
                    nacks.add_metric(labels, revision.nacked)
        yield clients
        yield nacks
        yield silent
        yield route_open


def _provider(provider: ProviderKind | None) -> str:
    return provider.value if provider else "UNSPECIFIED"


class Metrics:
    """The app's metrics: a registry, the recorders, and the optional HTTP endpoint."""

    def __init__(
        self,
        service: ConfigService,
        broadcaster: Broadcaster,
        *,
        fleet: FleetService | None = None,
        refusals: RefusalCounts | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StateCollector(service, broadcaster))
        self.registry.register(_CountsCollector(broadcaster, refusals))
        self.rpc_duration = Histogram(
            "stageconfig_rpc_duration_seconds",
            "Unary RPC latency by method and status code.",
            ["method", "code"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.streams = Counter(
            "stageconfig_rpc_streams",
            "Server streams ended, by method and status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.propagation = Histogram(
            "stageconfig_propagation_seconds",
            "Time from a change's commit to its write to a watcher's stream.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.sync_results = Counter(
            "stageconfig_sync_results",
            "Model refresh results by provider and resulting status.",
            ["provider", "status"],
            registry=self.registry,
        )
        self.task_outcomes = Counter(
            "stageconfig_fleet_task_outcomes",
            "Task outcomes workers reported to this replica, by stage, revision and result.",
            ["stage", "revision", "result"],
            registry=self.registry,
        )
        self.reports = Counter(
            "stageconfig_fleet_reports",
            "ReportStatus calls stored (counted) or recognised as retries (duplicate).",
            ["result"],
            registry=self.registry,
        )
        self.route_events = Counter(
            "stageconfig_fleet_route",
            "Route events workers reported to this replica (failovers, breaker_opened).",
            ["stage", "route_index", "provider", "event"],
            registry=self.registry,
        )
        if fleet is not None:
            self.registry.register(_FleetCollector(fleet))
            fleet.add_listener(self._record_report)
        self._http: Any = None
        self.port: int | None = None
        """The bound port of the HTTP endpoint, once serving."""
        broadcaster.on_delivered = self.propagation.observe
        service.add_refresh_listener(self._record_refresh)

    def _record_refresh(self, provider: ProviderKind, outcome: RefreshOutcome) -> None:
        self.sync_results.labels(provider.value, outcome.status.value).inc()

    def _record_report(self, report: StatusReport, counted: bool) -> None:
        self.reports.labels("counted" if counted else "duplicate").inc()
        if not counted:
            return
        for stage in report.stages:
            for outcome in stage.outcomes:
                labels = (stage.state.stage_type.value, str(outcome.revision))
                for result in ("succeeded", "failed", "retried"):
                    if count := getattr(outcome, result):
                        self.task_outcomes.labels(*labels, result).inc(count)
            for route in stage.state.routes:
                where = (
                    stage.state.stage_type.value,
                    str(route.route_index),
                    _provider(route.provider_kind),
                )
                for event in ("failovers", "breaker_opened"):
                    if count := getattr(route, event):
                        self.route_events.labels(*where, event).inc(count)

    def serve(self, address: str) -> int:
        """Expose /metrics on ``host:port``; returns the bound port."""
        host, _, port = address.rpartition(":")
        server, _thread = start_http_server(
            int(port), addr=host or "127.0.0.1", registry=self.registry
        )
        self._http = server
        bound: int = server.server_address[1]
        self.port = bound
        log.info("metrics on http://%s:%d/metrics", host or "127.0.0.1", bound)
        return bound

    def stop(self) -> None:
        """Stop the HTTP endpoint."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
