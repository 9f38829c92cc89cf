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

import time
from collections.abc import Callable, Iterator

import pytest

from stageconfig import AdminClient, ChangeReason, ConfigClient, StageType, TimingOptions
from stageconfig.admin import Rollout
from stageconfig_server.domain import ProviderKind as ServerProviderKind
from tests.fakes.provider_server import FakeProviders
from tests.integration.rollout_fleet import (
    CHECK_SECONDS,
    Fleet,
    Load,
    Plain,
    in_cohort,
    make_servers,
)
from tests.integration.support import CeleryWorker, TaskClient, stack_env, unique_queue
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

REPORT_INTERVAL = 1.0
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
SLACK = 3.0
"""Room for two shared cores on top of a deadline the design promises."""


@pytest.fixture(scope="module", params=["sqlite", "postgres-replicas"])
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("rollouts")
    fake = FakeProviders().start()
    fake.set_models(ServerProviderKind.OPENAI, MODELS)
    fake.fail_model(BROKEN, "permission")  # a 403: the SDK does not retry it
    servers, drop_database = make_servers(request.param, tmp, fake)
    for server in servers:
        server.start()
    targets = [s.target for s in servers]
    admin = AdminClient(targets[0], timeout=15)
    # With two replicas the worker's processes fail over between them, like any client.
    env = stack_env(
        ",".join(targets),
        fake,
        STAGECONFIG_BACKOFF_MAX_SECONDS="1",
        STAGECONFIG_REPORT_INTERVAL_SECONDS=str(REPORT_INTERVAL),
    )
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
