"""Safe rollouts end to end, all real processes: the stageconfig server (a subprocess whose
judge checks running rollouts every second), the Redis broker, ``celery worker
--pool=prefork --concurrency=2`` running the example app (``example.write_poem`` writes a
poem through the fake OpenAI with the POEM stage's model; the celery contrib records
every task's outcome), and 20 plain ConfigClients in this process that write poems too
and record their outcomes. Every client reports every second, and every revision a
client's ``on_change`` saw is recorded (the Celery children's through ``probe.events``).

- a 25 % rollout reaches exactly the cohort — the clients the documented hash of
  ``POEM/<client_id>`` puts below 25 — and ListConfigs counts the clients and the task
  outcomes of both sides; a promote reaches everyone; an abort returns the cohort to
  the stable config; the others never see a candidate;
- with the automatic policy and a candidate model the fake provider fails every
  generation with, the rollout aborts by itself within the bake window plus a report
  interval (and the judge's period), and the stable side never saw the candidate;
- with a healthy candidate it promotes by itself;
- a server restart in the middle of an automatic rollout (same database and port)
  changes none of that: the failing candidate is still aborted by the judge, and the
  stable side still never sees it.

Every test runs twice: against one server on a SQLite file, and against two replicas of
one PostgreSQL database (half the plain clients start on each; the Celery children know
both; the admin and the restart use the first), where the judges of both replicas write
one decision.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stageconfig import (
    AdminClient,
    ChangeReason,
    ConfigChangeEvent,
    ConfigClient,
    StageType,
    TimingOptions,
)
from stageconfig.admin import Rollout
from stageconfig.providers import ProviderFactory
from stageconfig_server.domain import ProviderKind as ServerProviderKind
from tests.fakes.provider_server import FakeProviders
from tests.integration.support import (
    REDIS_URL,
    CeleryWorker,
    TaskClient,
    free_port,
    unique_queue,
)
from tests.support.postgres import temporary_database
from tests.support.servers import ServerProcess, server_env

pytestmark = pytest.mark.slow

REPORT_INTERVAL = 1.0
CHECK_SECONDS = 1.0
"""STAGECONFIG_ROLLOUT_CHECK_SECONDS: how often the server judges running rollouts."""
BAKE_SECONDS = 4
PLAIN_CLIENTS = 20
POEM_KEY = "sk-rollout-poem-key-0001"
STABLE, NEXT, THIRD, BROKEN, HEALTHY = (
    "poem-stable",
    "poem-next",
    "poem-third",
    "poem-broken",
    "poem-healthy",
)
MODELS = [STABLE, NEXT, THIRD, BROKEN, HEALTHY]
"""What the fake OpenAI offers: every candidate verifies; BROKEN cannot generate."""
SLACK = 2.0
"""Room for two shared cores on top of a deadline the design promises."""


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


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


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


def _temporary_postgres() -> tuple[str, Callable[[], None]]:
    """A fresh PostgreSQL database's URL, and how to drop it."""
    database = temporary_database()
    loop = asyncio.new_event_loop()
    url = loop.run_until_complete(database.__aenter__())

    def drop() -> None:
        loop.run_until_complete(database.__aexit__(None, None, None))
        loop.close()

    return url, drop


def _servers(
    backend: str, tmp: Path, fake: FakeProviders
) -> tuple[list[ServerProcess], Callable[[], None]]:
    """One server on a SQLite file, or two replicas on one PostgreSQL database; each on a
    port of its own that it keeps across a restart."""
    settings = {"STAGECONFIG_ROLLOUT_CHECK_SECONDS": str(CHECK_SECONDS)}
    drop: Callable[[], None] = lambda: None  # noqa: E731
    count = 1
    if backend == "postgres-replicas":
        url, drop = _temporary_postgres()
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


@pytest.fixture(scope="module", params=["sqlite", "postgres-replicas"])
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("rollouts")
    fake = FakeProviders().start()
    fake.set_models(ServerProviderKind.OPENAI, MODELS)
    fake.fail_model(BROKEN, "permission")  # a 403: the SDK does not retry it
    servers, drop_database = _servers(request.param, tmp, fake)
    for server in servers:
        server.start()
    targets = [s.target for s in servers]
    admin = AdminClient(targets[0], timeout=15)
    env = {
        # With two replicas the worker's processes fail over between them, like any client.
        "STAGECONFIG_TARGET": ",".join(targets),
        "STAGECONFIG_BACKOFF_MAX_SECONDS": "1",
        "STAGECONFIG_REPORT_INTERVAL_SECONDS": str(REPORT_INTERVAL),
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_RESULT_BACKEND": REDIS_URL,
        **fake.env(),
    }
    queue = unique_queue("rollouts")
    worker = CeleryWorker(env, queue, concurrency=2)
    tasks = TaskClient(queue)
    timing = TimingOptions(report_interval_seconds=REPORT_INTERVAL, backoff_max_seconds=1)
    plain: dict[str, Plain] = {}
    for number in range(PLAIN_CLIENTS):
        client_id = f"plain-{number:02d}"
        # Half the clients start on each replica (with one server, all on it).
        order = targets[number % len(targets) :] + targets[: number % len(targets)]
        entry = Plain(ConfigClient(order, client_id=client_id, timing=timing), fake.env())
        entry.client.on_change(entry.record)
        plain[client_id] = entry
    made = Fleet(servers, admin, worker, tasks, plain, set())
    try:
        admin.update_config("POEM", "OPENAI", api_key=POEM_KEY, model=STABLE)
        for entry in plain.values():
            entry.client.start()
        worker.start()
        deadline = time.monotonic() + 30
        while len(made.pids) < 2:
            assert time.monotonic() < deadline, f"one pool process never answered: {made.pids}"
            made.pids |= {
                r["pid"] for r in tasks.run_batch("probe.report", 4, stage="POEM", hold=0.2)
            }
        for entry in plain.values():
            entry.client.wait_ready(15)
        yield made
    finally:
        for entry in plain.values():
            entry.client.close()
        worker.stop()
        tasks.close()
        admin.close()
        for server in servers:
            server.stop()
        drop_database()
        fake.stop()


@pytest.fixture
def no_rollout_left(fleet: Fleet) -> Iterator[None]:
    """Each test starts and ends without a running rollout."""
    assert fleet.rollout() is None
    yield
    if fleet.rollout() is not None:
        fleet.admin.abort_rollout("POEM", comment="test cleanup")


def _everyone_at(fleet: Fleet, revision: int, model: str) -> Callable[[], bool]:
    def check() -> bool:
        return all(fleet.poem_config(c) == (revision, model) for c in fleet.plain)

    return check


def test_a_manual_rollout_reaches_exactly_the_cohort_then_promote_and_abort(
    fleet: Fleet, no_rollout_left: None
) -> None:
    cohort = {c for c in fleet.all_ids if in_cohort(c, 25)}
    plain_cohort = cohort & set(fleet.plain)
    assert plain_cohort, "the fixed client ids put at least one plain client in the cohort"
    stable_before = fleet.poem_config("plain-00")[0] if "plain-00" not in cohort else None

    rollout = fleet.admin.start_rollout("POEM", model=NEXT, percent=25, comment="e2e manual")
    candidate = rollout.candidate_revision
    assert rollout.running
    assert rollout.percent == 25
    assert rollout.candidate is not None
    assert rollout.candidate.model == NEXT
    assert rollout.candidate.api_key != POEM_KEY  # masked

    def cohort_has_it() -> bool:
        return all(fleet.poem_config(c) == (candidate, NEXT) for c in plain_cohort)

    wait_for(cohort_has_it, 10, "the plain cohort on the candidate")
    with Load(fleet):

        def both_sides_counted() -> bool:
            view = fleet.rollout()
            assert view is not None
            return (
                view.canary.clients == len(cohort)
                and view.stable.clients == len(fleet.all_ids) - len(cohort)
                and view.canary.succeeded > 0
                and view.stable.succeeded > 0
            )

        wait_for(both_sides_counted, 15, "ListConfigs counting the clients and tasks of both sides")
    assert fleet.canaries() == cohort
    children = fleet.child_models()
    for client_id, pid in fleet.child_ids.items():
        assert children[pid] == (NEXT if client_id in cohort else STABLE)
    for client_id, entry in fleet.plain.items():
        if client_id not in cohort:
            assert candidate not in entry.revisions, client_id
            assert fleet.poem_config(client_id)[1] == STABLE
    if stable_before is not None:
        assert fleet.poem_config("plain-00")[0] == stable_before

    promoted = fleet.admin.promote_rollout("POEM", expected_revision=candidate)
    assert promoted.rollout is not None
    assert promoted.rollout.state.value == "PROMOTED"
    assert promoted.config.model == NEXT
    wait_for(
        _everyone_at(fleet, promoted.config.revision, NEXT), 10, "everyone on the promoted config"
    )
    assert fleet.rollout() is None

    second = fleet.admin.start_rollout("POEM", model=THIRD, percent=25)
    wait_for(
        lambda: all(
            fleet.poem_config(c) == (second.candidate_revision, THIRD) for c in plain_cohort
        ),
        10,
        "the cohort on the second candidate",
    )
    aborted = fleet.admin.abort_rollout("POEM")
    assert aborted.config.model == NEXT
    assert aborted.rollout is not None
    assert aborted.rollout.state.value == "ABORTED"

    def cohort_back() -> bool:
        return all(fleet.poem_config(c)[1] == NEXT for c in plain_cohort)

    wait_for(cohort_back, 10, "the cohort back on the stable config")
    for client_id, entry in fleet.plain.items():
        if client_id not in cohort:
            assert second.candidate_revision not in entry.revisions, client_id
            assert aborted.config.revision not in entry.revisions, client_id
    child_seen = fleet.child_revisions()
    for client_id, pid in fleet.child_ids.items():
        if client_id not in cohort:
            assert not {candidate, second.candidate_revision} & child_seen[pid], client_id


def _run_automatic(fleet: Fleet, model: str, restart: bool = False) -> tuple[Rollout, float, int]:
    """Start an automatic 25 % rollout of ``model`` under load and wait for the server
    to end it (``restart``: restart the server a second into the bake); the rollout as
    started, how long it ran, the revision that ended it."""
    started = time.monotonic()
    rollout = fleet.admin.start_rollout(
        "POEM",
        model=model,
        percent=25,
        bake_seconds=BAKE_SECONDS,
        min_tasks=10,
        max_failure_rate_increase=0.2,
        comment=f"e2e automatic {model}",
    )
    assert rollout.policy is not None
    with Load(fleet):
        if restart:
            time.sleep(1.0)  # into the bake window, with reports on both sides
            fleet.server.stop()
            fleet.server.start()
        wait_for(lambda: fleet.rollout() is None, 30, "the judge ending the rollout")
        took = time.monotonic() - started
    (entry,) = fleet.admin.history("POEM", page_size=1).entries
    return rollout, took, entry.revision


@pytest.mark.parametrize("restart", [False, True], ids=["steady", "server-restart"])
def test_a_failing_candidate_aborts_by_itself_and_the_stable_side_never_sees_it(
    fleet: Fleet, no_rollout_left: None, restart: bool
) -> None:
    stable_model = fleet.plain["plain-00"].client.get(StageType.POEM).model
    cohort = {c for c in fleet.all_ids if in_cohort(c, 25)}
    rollout, took, end_revision = _run_automatic(fleet, BROKEN, restart)
    print(f"\nthe failing candidate was aborted {took:.2f} s after its start")
    (entry,) = fleet.admin.history("POEM", page_size=1).entries
    assert entry.reason is ChangeReason.ROLLOUT_ABORTED
    # A restart adds the server's start and the clients' reconnect (backoff ≤ 1 s).
    allowed = BAKE_SECONDS + REPORT_INTERVAL + CHECK_SECONDS + SLACK + (3.0 if restart else 0)
    assert took <= allowed

    def cohort_back() -> bool:
        return all(
            fleet.poem_config(c) == (end_revision, stable_model) for c in cohort & set(fleet.plain)
        )

    wait_for(cohort_back, 10, "the cohort back on the stable config")
    for client_id, plain in fleet.plain.items():
        if client_id not in cohort:
            assert rollout.candidate_revision not in plain.revisions, client_id
            assert BROKEN not in {model for _, model in plain.seen}, client_id
    child_seen = fleet.child_revisions()
    for client_id, pid in fleet.child_ids.items():
        if client_id not in cohort:
            assert rollout.candidate_revision not in child_seen[pid], client_id


def test_a_healthy_candidate_promotes_by_itself(fleet: Fleet, no_rollout_left: None) -> None:
    _rollout, took, end_revision = _run_automatic(fleet, HEALTHY)
    print(f"\nthe healthy candidate was promoted {took:.2f} s after its start")
    (entry,) = fleet.admin.history("POEM", page_size=1).entries
    assert entry.reason is ChangeReason.ROLLOUT_PROMOTED
    assert took <= BAKE_SECONDS + REPORT_INTERVAL + CHECK_SECONDS + SLACK
    wait_for(_everyone_at(fleet, end_revision, HEALTHY), 10, "everyone on the promoted config")
    assert set(fleet.child_models().values()) == {HEALTHY}
