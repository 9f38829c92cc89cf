"""The fleet of the rollouts end-to-end test (``test_rollouts_e2e.py``): plain
ConfigClients that write poems and remember every revision they saw, the Celery worker's
children, the servers (one on SQLite, or two PostgreSQL replicas), and the load that
keeps poems being written while a rollout is judged."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stageconfig import AdminClient, ConfigChangeEvent, ConfigClient, StageType
from stageconfig.admin import Rollout
from stageconfig.providers import ProviderFactory
from tests.fakes.provider_server import FakeProviders
from tests.integration.support import CeleryWorker, TaskClient, free_port
from tests.support.postgres import temporary_database
from tests.support.servers import ServerProcess, server_env

CHECK_SECONDS = 1.0
"""STAGECONFIG_ROLLOUT_CHECK_SECONDS: how often the servers judge running rollouts."""


def in_cohort(client_id: str, percent: int) -> bool:
    """The documented cohort rule (docs/rollouts.md): SHA-256 of ``POEM/<client_id>``,
    its first 8 bytes big-endian, modulo 100, below ``percent``."""
    digest = hashlib.sha256(f"POEM/{client_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < percent


@dataclass
class Plain:
    """A plain ConfigClient and every POEM revision and model its on_change saw."""

    client: ConfigClient
    provider_env: dict[str, str]
    """Where ProviderFactory finds the fake's endpoints."""
    seen: list[tuple[int, str]] = field(default_factory=list)

    def record(self, event: ConfigChangeEvent) -> None:
        for change in event.changes:
            if change.stage is StageType.POEM and change.new is not None:
                self.seen.append((change.new.revision, change.new.model))

    @property
    def revisions(self) -> set[int]:
        return {revision for revision, _ in self.seen}

    def write_poem(self) -> None:
        """One task: a poem with this client's POEM config, its outcome recorded."""
        config = self.client.get(StageType.POEM)
        started = time.monotonic()
        try:
            poet = ProviderFactory.text_generator(config, env=self.provider_env)
            poet.generate("Write about the sea.")
        except Exception as error:  # the fake's failure for a broken model
            ok, cause = False, type(error).__name__
        else:
            ok, cause = True, None
        self.client.record_outcome(
            StageType.POEM, ok, cause, time.monotonic() - started, revision=config.revision
        )


@dataclass
class Fleet:
    servers: list[ServerProcess]
    """One server, or two replicas of one PostgreSQL database."""
    admin: AdminClient
    """On the first server (the one a restart test restarts)."""
    worker: CeleryWorker
    tasks: TaskClient
    plain: dict[str, Plain]
    pids: set[int]

    @property
    def child_ids(self) -> dict[str, int]:
        return {f"{socket.gethostname()}/{pid}": pid for pid in self.pids}

    @property
    def all_ids(self) -> set[str]:
        return set(self.plain) | set(self.child_ids)

    def poem_config(self, client_id: str) -> tuple[int, str]:
        config = self.plain[client_id].client.get(StageType.POEM)
        return config.revision, config.model

    def child_revisions(self) -> dict[int, set[int]]:
        """Every revision each Celery child's on_change saw."""
        found = self.tasks.per_process("probe.events", self.pids, timeout=30, hold=0.2)
        return {pid: {e["revision"] for e in answer["events"]} for pid, answer in found.items()}

    def child_models(self) -> dict[int, str]:
        """The POEM model each Celery child uses now."""
        found = self.tasks.per_process("probe.report", self.pids, timeout=30, hold=0.2)
        return {pid: answer["model"] for pid, answer in found.items()}

    @property
    def server(self) -> ServerProcess:
        return self.servers[0]

    def canaries(self) -> set[str]:
        """The watchers of every server that say they are in the POEM cohort."""
        found: set[str] = set()
        for server in self.servers:
            with AdminClient(server.target, timeout=15) as admin:
                found |= {
                    w.client_id
                    for w in admin.list_watchers().watchers
                    if StageType.POEM in w.canary_stages
                }
        return found

    def rollout(self) -> Rollout | None:
        return self.admin.list_configs().stage(StageType.POEM).rollout


class Load:
    """Poems written all the time while it runs: every plain client one per round, and
    up to four ``example.write_poem`` tasks in flight on the Celery worker."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poem-load", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        pending: list[Any] = []
        app, queue = self.fleet.tasks.app, self.fleet.tasks.queue
        while not self._stop.is_set():
            for plain in self.fleet.plain.values():
                plain.write_poem()
            pending = [p for p in pending if not p.ready()]
            while len(pending) < 4:
                pending.append(
                    app.send_task("example.write_poem", kwargs={"topic": "sea"}, queue=queue)
                )


def temporary_postgres() -> tuple[str, Callable[[], None]]:
    """A fresh PostgreSQL database's URL, and how to drop it."""
    database = temporary_database()
    loop = asyncio.new_event_loop()
    url = loop.run_until_complete(database.__aenter__())

    def drop() -> None:
        loop.run_until_complete(database.__aexit__(None, None, None))
        loop.close()

    return url, drop


def make_servers(
    backend: str, tmp: Path, fake: FakeProviders
) -> tuple[list[ServerProcess], Callable[[], None]]:
    """One server on a SQLite file, or two replicas on one PostgreSQL database; each on a
    port of its own that it keeps across a restart."""
    settings = {"STAGECONFIG_ROLLOUT_CHECK_SECONDS": str(CHECK_SECONDS)}
    drop: Callable[[], None] = lambda: None  # noqa: E731
    count = 1
    if backend == "postgres-replicas":
        url, drop = temporary_postgres()
        settings["STAGECONFIG_DATABASE_URL"] = url
        count = 2
    servers = [
        ServerProcess(
            server_env(
                tmp / "stageconfig.db",
                fake,
                STAGECONFIG_ADDRESS=f"127.0.0.1:{free_port()}",
                **settings,
            )
        )
        for _ in range(count)
    ]
    return servers, drop
