"""The running server, assembled: database, cipher, service, broadcaster, sync, gRPC.

``StageConfigApp.start(settings)`` is what ``stageconfig-server`` and the tests run; it
fails fast (before binding) on a missing or wrong ``ADMIN_SECRET_KEY``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from stageconfig_server.admin_events import LogAndWebhookEvents
from stageconfig_server.broadcast import Broadcaster
from stageconfig_server.crypto import KeyCipher
from stageconfig_server.db.engine import create_engine, is_sqlite
from stageconfig_server.db.fleet import FleetReports
from stageconfig_server.db.migrate import upgrade_to_head
from stageconfig_server.db.repository import Repository
from stageconfig_server.domain import ProviderKind
from stageconfig_server.errors import SecretMismatch
from stageconfig_server.fleet_service import FleetService
from stageconfig_server.health import DatabaseHealth
from stageconfig_server.metrics import Metrics
from stageconfig_server.providers.base import ProviderAdapter
from stageconfig_server.providers.registry import build_adapters
from stageconfig_server.replication import PostgresChangeFeed
from stageconfig_server.rollout_judge import RolloutJudge
from stageconfig_server.rpc.instrumentation import method_instrumentation
from stageconfig_server.rpc.refusals import RefusalLog
from stageconfig_server.rpc.server import NOT_SERVING, connection_age_options, create_server
from stageconfig_server.rpc.servicer import StageConfigServicer
from stageconfig_server.rpc.stream_limits import StreamLimits
from stageconfig_server.rpc.transport import load_security
from stageconfig_server.rpc.watch_encoding import ProtoWatchEncoder
from stageconfig_server.service import ConfigService
from stageconfig_server.settings import LegacySettings, Settings
from stageconfig_server.sync import ModelSync

log = logging.getLogger(__name__)


def build_cipher(settings: Settings) -> KeyCipher:
    """The key cipher from ADMIN_SECRET_KEY (+ previous secrets)."""
    if settings.admin_secret_key is None or not settings.admin_secret_key.get_secret_value():
        raise SecretMismatch(
            "ADMIN_SECRET_KEY is not set: it is the secret stored API keys are encrypted "
            "with. Set it (scripts/serve generates a development one)."
        )
    return KeyCipher(
        settings.admin_secret_key.get_secret_value(),
        [s.get_secret_value() for s in settings.admin_secret_key_previous],
    )


async def open_storage(
    settings: Settings, clock: Callable[[], datetime] | None = None
) -> tuple[AsyncEngine, Repository, KeyCipher]:
    """Engine, migrations, repository and a cipher checked against the stored canary."""
    cipher = build_cipher(settings)
    engine = create_engine(settings.database_url)
    try:
        await upgrade_to_head(engine)
        repository = Repository(engine, clock)
        canary, created = await repository.get_or_create_canary(cipher.make_canary)
        if not created:
            cipher.check_canary(canary)
    except BaseException:
        await engine.dispose()
        raise
    return engine, repository, cipher


def build_service(
    settings: Settings,
    repository: Repository,
    cipher: KeyCipher,
    legacy: LegacySettings,
    *,
    adapters: Mapping[ProviderKind, ProviderAdapter] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> ConfigService:
    """The service as the server and the maintenance commands run it: real adapters
    (unless given), the admin webhook and the provider timeout from ``settings``."""
    timeout = settings.provider_timeout_seconds
    return ConfigService(
        repository,
        cipher,
        adapters or build_adapters(settings.provider_base_urls(), timeout),
        legacy,
        events=LogAndWebhookEvents(settings.admin_webhook_url),
        provider_timeout_seconds=timeout,
        clock=clock,
    )


def build_fleet(
    service: ConfigService, engine: AsyncEngine, clock: Callable[[], datetime] | None = None
) -> FleetService:
    """Fleet truth over the shared database: every replica reads the same reports."""
    return FleetService(
        FleetReports(engine),
        head_revision=lambda: service.head_revision,
        catch_up=service.catch_up,
        stage_revisions=lambda: {
            v.stage_type: v.config.revision for v in service.list_configs() if v.config
        },
        # Every key the server holds now (stored or legacy fallback, and every fallback
        # route's): none may reach an admin through a worker's refusal reason.
        secrets=lambda: [
            key
            for v in service.list_configs()
            if v.config
            for key in (v.config.api_key, *(r.api_key for r in v.config.fallbacks))
        ],
        clock=clock,
    )


@dataclass
class StageConfigApp:
    """A started server and everything it owns."""

    settings: Settings
    engine: AsyncEngine
    service: ConfigService
    broadcaster: Broadcaster
    sync: ModelSync
    server: grpc.aio.Server
    port: int
    health: Any
    metrics: Metrics
    feed: PostgresChangeFeed | None = None
    database_health: DatabaseHealth | None = None
    fleet: FleetService | None = None
    judge: RolloutJudge | None = None

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        legacy: LegacySettings | None = None,
        adapters: Mapping[ProviderKind, ProviderAdapter] | None = None,
        clock: Callable[[], datetime] | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
        run_sync: bool = True,
    ) -> StageConfigApp:
        """Open storage, load the view, start the sync and serve.

        Refuses (UnsafeConfiguration) before touching the database when the tokens or
        TLS settings are malformed, or the address is exposed without them.
        """
        refusals = RefusalLog(logging.getLogger("stageconfig_server.rpc.refusals"))
        security = load_security(settings, refusals)
        engine, repository, cipher = await open_storage(settings, clock)
        feed: PostgresChangeFeed | None = None
        database_health: DatabaseHealth | None = None
        try:
            service = build_service(
                settings,
                repository,
                cipher,
                legacy if legacy is not None else LegacySettings(),
                adapters=adapters,
                clock=clock,
            )
            await service.load()
            broadcaster = Broadcaster(
                service,
                encoder=ProtoWatchEncoder(),
                heartbeat_seconds=settings.heartbeat_seconds,
                send_timeout_seconds=settings.watch_send_timeout_seconds,
                retained_changes=settings.watch_retained_changes,
            )
            await broadcaster.load_recent()
            if not is_sqlite(settings.database_url):
                # Other replicas write to the same database: follow their changes.
                feed = PostgresChangeFeed(service, settings.database_url)
                await feed.start()
            fleet = build_fleet(service, engine, clock)
            service.rollouts.attach_sides(
                lambda record: fleet.rollout_sides(
                    record,
                    [
                        w.cohort_id
                        for w in broadcaster.watchers
                        if w.cohort_id and record.stage_type in w.stages
                    ],
                )
            )
            metrics = Metrics(service, broadcaster, fleet=fleet, refusals=refusals)
            servicer = StageConfigServicer(
                service, broadcaster, security.caller_of, fleet=fleet, refusals=refusals
            )
            server, port, health_servicer = create_server(
                servicer,
                settings.address,
                credentials=security.credentials,
                # Auth outermost: it swaps the handler the others built, so a rejected
                # call runs none of them.
                interceptors=[*security.interceptors, *interceptors],
                instrument=method_instrumentation(metrics),
                refusals=refusals,
                stream_limits=StreamLimits(
                    security.caller_of,
                    refusals,
                    per_peer=settings.max_streams_per_peer,
                    per_token=settings.max_streams_per_token,
                ),
                options=[
                    *connection_age_options(
                        settings.max_connection_age_seconds,
                        settings.max_connection_age_grace_seconds,
                    ),
                    # grpc binds with SO_REUSEPORT by default, so several processes can
                    # share one port (the multi-process mode, README "Benchmarks"). On
                    # SQLite a second process has no change feed and would serve a
                    # diverging view: there, a second bind must fail instead.
                    *([("grpc.so_reuseport", 0)] if is_sqlite(settings.database_url) else []),
                ],
            )
            await server.start()
            # Health follows the database: NOT_SERVING while writes cannot be stored.
            database_health = DatabaseHealth(
                repository, health_servicer, on_recovered=service.catch_up
            )
            await database_health.start()
            if settings.metrics_address:
                metrics.serve(settings.metrics_address)
            sync = ModelSync(
                service.refresh,
                repository,
                timedelta(hours=settings.sync_interval_hours),
                clock=clock,
            )
            if run_sync:
                await sync.start()
            fleet.start()
            judge = RolloutJudge(
                repository,
                service.rollouts,
                interval_seconds=settings.rollout_check_seconds,
                clock=clock or (lambda: datetime.now(UTC)),
            )
            judge.start()
        except BaseException:
            if database_health is not None:
                await database_health.stop()
            if feed is not None:
                await feed.stop()
            await engine.dispose()
            raise
        log.info("stageconfig serving on %s (port %d)", settings.address, port)
        return cls(
            settings,
            engine,
            service,
            broadcaster,
            sync,
            server,
            port,
            health_servicer,
            metrics,
            feed,
            database_health,
            fleet,
            judge,
        )

    @property
    def target(self) -> str:
        """host:port a client on this machine dials."""
        host = self.settings.address.rsplit(":", 1)[0] or "127.0.0.1"
        if host in ("0.0.0.0", "[::]", "::"):  # noqa: S104 - a listen address, not a bind
            host = "127.0.0.1"
        return f"{host}:{self.port}"

    async def stop(self, grace: float = 5.0) -> None:
        """Graceful shutdown: NOT_SERVING, end watch streams, finish unary calls, close."""
        await self.health.enter_graceful_shutdown()
        if self.database_health is not None:
            await self.database_health.stop()
        self.sync.stop()
        if self.judge is not None:
            await self.judge.stop()
        if self.fleet is not None:
            await self.fleet.stop()
        if self.feed is not None:
            await self.feed.stop()
        self.metrics.stop()
        self.broadcaster.close()
        await self.server.stop(grace)
        await _database_work_settled(self.engine, DATABASE_SETTLE_SECONDS)
        await self.engine.dispose()


DATABASE_SETTLE_SECONDS = 5.0
"""How long shutdown waits for cancelled work to hand its database connection back."""


async def _database_work_settled(engine: AsyncEngine, within: float) -> None:
    """Wait (at most ``within``) until no connection is checked out of the pool.

    Stopping cancels background work (the model sync, the change feed) that may be in the
    middle of a database call; the cancelled task then closes its connection, which takes
    a few event-loop turns. Left to the loop's teardown instead, it is cancelled a second
    time, and aiosqlite's close waits forever on its already stopped worker thread: the
    process never exits after SIGTERM.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    checked_out = getattr(engine.pool, "checkedout", lambda: 0)
    # The pool offers nothing to await for "all checked in": poll, briefly and bounded.
    while checked_out() and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


__all__ = ["NOT_SERVING", "StageConfigApp", "build_cipher", "build_service", "open_storage"]
