"""``stageconfigctl rollout …`` and ``AdminClient``'s rollout calls against a real server
subprocess (tokens checked) with real ConfigClients watching under chosen client ids:
what each command prints and exits with, the views the typed client returns, and that
nothing a worker or an admin typed reaches the terminal raw.

The tests share one server and one set of watchers; each leaves no rollout running.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Iterator

import pytest

from stageconfig import (
    AdminClient,
    ConfigClient,
    ConflictError,
    StageType,
    TimingOptions,
)
from stageconfig.admin import RolloutState
from stageconfig.ctl.output import safe_output
from stageconfig.ctl.rollout import rollout_lines
from stageconfig.errors import RolloutStateError
from tests.admin.conftest import (
    ADMIN_TOKEN,
    OPENAI_KEY_B,
    TOKENS,
    WORKER_TOKEN,
    needs_auth,
    run_ctl,
    start_server,
)
from tests.fakes.provider_server import FakeProviders
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

pytestmark = needs_auth

WORKERS = [f"worker-{n}" for n in range(1, 9)]


def in_cohort(client_id: str, percent: int, stage: str = "POEM") -> bool:
    """The documented rule: SHA-256 of ``STAGE/client_id``, 8 bytes big-endian, mod 100."""
    digest = hashlib.sha256(f"{stage}/{client_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < percent


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, _fake_providers_server: FakeProviders
) -> Iterator[ServerProcess]:
    process = start_server(
        tmp_path_factory.mktemp("ctl-rollout") / "stageconfig.db",
        _fake_providers_server,
        tokens=TOKENS,
    )
    try:
        with AdminClient(process.target, token=ADMIN_TOKEN, timeout=15) as admin:
            admin.update_config("POEM", "OPENAI", api_key=OPENAI_KEY_B, model="gpt-4o")
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def workers(server: ServerProcess) -> Iterator[dict[str, ConfigClient]]:
    timing = TimingOptions(report_interval_seconds=1, backoff_max_seconds=1)
    clients = {
        cid: ConfigClient(server.target, token=WORKER_TOKEN, client_id=cid, timing=timing)
        for cid in WORKERS
    }
    try:
        for client in clients.values():
            client.start().wait_ready(15)
        yield clients
    finally:
        for client in clients.values():
            client.close()


@pytest.fixture
def admin(server: ServerProcess, workers: dict[str, ConfigClient]) -> Iterator[AdminClient]:
    with AdminClient(server.target, token=ADMIN_TOKEN, timeout=15) as client:
        assert client.list_configs().stage("POEM").rollout is None
        yield client
        if client.list_configs().stage("POEM").rollout is not None:
            client.abort_rollout("POEM", comment="test cleanup")


def _models(workers: dict[str, ConfigClient]) -> dict[str, str]:
    return {cid: client.get(StageType.POEM).model for cid, client in workers.items()}


def test_start_status_and_promote_from_the_command_line(
    server: ServerProcess, workers: dict[str, ConfigClient], admin: AdminClient
) -> None:
    target = server.target
    stable_model = admin.list_configs().stage("POEM").config.model  # type: ignore[union-attr]
    cohort = {c for c in WORKERS if in_cohort(c, 50)}
    assert cohort
    assert cohort != set(WORKERS)

    started = run_ctl(
        target, "rollout", "start", "poem", "--model", "gpt-4o-mini", "--percent", "50"
    )
    assert started.code == 0, started.stderr
    assert started.stdout.startswith("rollout of POEM started\n")
    assert "50 % of clients" in started.stdout
    assert "manual (promote or abort)" in started.stdout
    assert "sk-…0002" in started.stdout
    assert OPENAI_KEY_B not in started.stdout + started.stderr
    candidate = admin.list_configs().stage("POEM").rollout
    assert candidate is not None

    wait_for(
        lambda: {c for c, m in _models(workers).items() if m == "gpt-4o-mini"} == cohort,
        10,
        "exactly the cohort on the candidate",
    )

    def sides_counted() -> bool:
        view = json.loads(run_ctl(target, "rollout", "status", "POEM", "--json").stdout)["POEM"]
        return (view["canary"]["clients"], view["stable"]["clients"]) == (
            len(cohort),
            len(WORKERS) - len(cohort),
        )

    wait_for(sides_counted, 10, "both sides counted")
    status = run_ctl(target, "status")
    assert status.code == 0, status.stderr
    line = next(x for x in status.stdout.splitlines() if x.startswith("POEM rollout:"))
    assert f"candidate revision {candidate.candidate_revision} (OPENAI gpt-4o-mini)" in line
    assert f"canary rev {candidate.candidate_revision}  {len(cohort)} client" in line
    assert f"stable rev {candidate.stable_revision}  {len(WORKERS) - len(cohort)} clients" in line
    watchers = run_ctl(target, "watchers")
    assert watchers.code == 0, watchers.stderr
    for cid in WORKERS:
        (row,) = [line for line in watchers.stdout.splitlines() if line.startswith(cid + " ")]
        assert ("POEM*" in row) == (cid in cohort), row
    assert "* in the cohort" in watchers.stdout
    fleet = run_ctl(target, "fleet", "POEM")
    assert fleet.code == 0, fleet.stderr
    assert f"POEM  rollout: candidate revision {candidate.candidate_revision}" in fleet.stdout
    shown = run_ctl(target, "rollout", "status")
    assert shown.code == 0, shown.stderr
    assert "VOICE: no rollout running" in shown.stdout
    assert "  cohort       50 % of clients" in shown.stdout

    refused = run_ctl(target, "set", "POEM", "--provider", "OPENAI", "--model", "o3-mini")
    assert refused.code == 1, refused.stdout
    assert "rollout" in refused.stderr
    again = run_ctl(target, "rollout", "start", "POEM", "--model", "o3-mini", "--percent", "5")
    assert again.code == 1, again.stdout
    stale = str(candidate.candidate_revision + 100)
    conflict = run_ctl(target, "rollout", "promote", "POEM", "--expected-revision", stale)
    assert conflict.code == 4, conflict.stderr

    promoted = run_ctl(
        target,
        "rollout",
        "promote",
        "POEM",
        "--expected-revision",
        str(candidate.candidate_revision),
    )
    assert promoted.code == 0, promoted.stderr
    assert promoted.stdout.startswith("promoted: every client now has at revision ")
    assert "PROMOTED" in promoted.stdout
    wait_for(
        lambda: set(_models(workers).values()) == {"gpt-4o-mini"}, 10, "everyone on the candidate"
    )
    none_left = run_ctl(target, "rollout", "promote", "POEM")
    assert none_left.code == 1
    assert "failed precondition" in none_left.stderr
    assert run_ctl(target, "rollout", "status", "POEM").stdout == "POEM: no rollout running\n"
    assert stable_model != "gpt-4o-mini"


def test_abort_returns_an_explicit_cohort_and_the_typed_views(
    server: ServerProcess, workers: dict[str, ConfigClient], admin: AdminClient
) -> None:
    stable = admin.list_configs().stage("POEM")
    assert stable.config is not None
    rollout = admin.start_rollout(
        "POEM",
        model="o3-mini",
        client_ids=["worker-2", "worker-5"],
        bake_seconds=3600,
        min_tasks=1000,
        max_failure_rate_increase=0.05,
        comment="explicit cohort",
    )
    assert rollout.state is RolloutState.RUNNING
    assert rollout.client_ids == ("worker-2", "worker-5")
    assert rollout.percent == 0
    assert rollout.cohort == "2 clients: worker-2, worker-5"
    assert rollout.policy is not None
    assert rollout.policy.min_tasks == 1000
    assert rollout.candidate is not None
    assert rollout.candidate.api_key_masked
    assert rollout.stable_revision == stable.revision
    wait_for(
        lambda: (
            {c for c, m in _models(workers).items() if m == "o3-mini"} == {"worker-2", "worker-5"}
        ),
        10,
        "the two canaries on the candidate",
    )
    watchers = admin.list_watchers().watchers
    assert {w.client_id for w in watchers if StageType.POEM in w.canary_stages} == {
        "worker-2",
        "worker-5",
    }
    fleet = admin.fleet_status("POEM").stage("POEM")
    assert fleet.rollout is not None
    assert fleet.rollout.candidate_revision == rollout.candidate_revision
    with pytest.raises(RolloutStateError):  # one rollout per stage
        admin.start_rollout("POEM", model="gpt-4o", percent=10)
    with pytest.raises(RolloutStateError):
        admin.update_config("POEM", "OPENAI", model="gpt-4o")
    with pytest.raises(ConflictError):
        admin.abort_rollout("POEM", expected_revision=rollout.candidate_revision + 50)
    with pytest.raises(ValueError, match="exactly one"):
        admin.start_rollout("POEM", model="gpt-4o", percent=10, client_ids=["w"])
    with pytest.raises(ValueError, match="min_tasks"):
        admin.start_rollout("POEM", model="gpt-4o", percent=10, bake_seconds=5)

    aborted = run_ctl(server.target, "rollout", "abort", "POEM", "--comment", "too slow")
    assert aborted.code == 0, aborted.stderr
    # A new key goes to a cohort the same way, read from stdin and shown only masked.
    new_key = "sk-proj-key-c-00000000000000000003"
    keyed = run_ctl(server.target, "rollout", "start", "POEM", "--key-stdin",
                    "--client-id", "worker-4", stdin=new_key + "\n")  # fmt: skip
    assert keyed.code == 0, keyed.stderr
    assert "sk-…0003" in keyed.stdout
    assert new_key not in keyed.stdout + keyed.stderr
    wait_for(
        lambda: workers["worker-4"].get(StageType.POEM).api_key == new_key,
        10,
        "the canary holding the new key",
    )
    assert workers["worker-1"].get(StageType.POEM).api_key == OPENAI_KEY_B
    aborted = run_ctl(server.target, "rollout", "abort", "POEM", "--comment", "too slow")
    assert aborted.code == 0, aborted.stderr
    assert aborted.stdout.startswith("aborted: the cohort is back on the stable config at revision")
    assert stable.config.model in aborted.stdout.splitlines()[0]
    wait_for(
        lambda: set(_models(workers).values()) == {stable.config.model},  # type: ignore[union-attr]
        10,
        "the cohort back on the stable config",
    )
    (entry,) = admin.history("POEM", page_size=1).entries
    assert entry.reason.value == "ROLLOUT_ABORTED"
    with pytest.raises(RolloutStateError):  # nothing left to abort
        admin.abort_rollout("POEM")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "m"], "one of the arguments --percent --client-id is required"),
        (["--percent", "0"], "must be 1 to 99"),
        (["--percent", "5", "--client-id", "a"], "not allowed with argument"),
        (["--percent", "5", "--bake-seconds", "10"], "all three of --bake-seconds"),
        (["--percent", "5", "--max-failure-rate-increase", "2"], "between 0 and 1"),
    ],
)
def test_usage_errors_exit_2_before_any_call(
    server: ServerProcess, args: list[str], message: str
) -> None:
    result = run_ctl(server.target, "rollout", "start", "POEM", *args)
    assert result.code == 2, result.stdout
    assert message in result.stderr
    as_json = run_ctl(server.target, "--json", "rollout", "start", "POEM", *args)
    assert json.loads(as_json.stderr)["error"]["exit_code"] == 2


def test_control_characters_are_refused_by_the_server_and_escaped_by_the_printer(
    server: ServerProcess, admin: AdminClient
) -> None:
    # Client ids and models with control characters never get in: refused, field named.
    for flags, field in (
        (["--model", "gpt-4o", "--client-id", "evil\x1b[2J", "--client-id", "ok"],
         "rollout.client_ids[0]"),
        (["--model", "gpt\x1b]0;owned\x07", "--percent", "10"], "model"),
    ):  # fmt: skip
        refused = run_ctl(server.target, "rollout", "start", "POEM", *flags)
        assert refused.code == 1
        assert f"invalid argument {field}" in refused.stderr
        assert "\x1b" not in refused.stderr
        assert admin.list_configs().stage("POEM").rollout is None
    # Should one come from an older or foreign server, the printer escapes it anyway.
    hostile = "evil\x1b]0;owned\x07\u202e"
    started = admin.start_rollout("POEM", model="gpt-4o", client_ids=["ok"])
    shown = dataclasses.replace(started, client_ids=(hostile,), decision=hostile)
    out = io.StringIO()
    safe_output(out).write("\n".join(rollout_lines(shown)) + "\n")
    assert "\x1b" not in out.getvalue()
    assert "\u202e" not in out.getvalue()
    assert "evil\\x1b]0;owned\\x07\\u202e" in out.getvalue()
