"""Fleet truth end to end, all real processes: the stageconfig server (a subprocess), the
Redis broker, ``celery worker --pool=prefork --concurrency=2`` running the example app
with the probe tasks (every child refuses ``refused`` models with a validator), and a
second, plain ConfigClient in the test process. Every client reports every second.

- after an UpdateConfig, ListWatchers shows every client's applied_revision at the head
  within 2 s;
- a model the worker's validator refuses is NACKed by both children with the reason in
  GetFleetStatus, while their tasks keep running on the previous model (the plain client
  applies it);
- tasks failing with a new config show up as that revision's failure rate within one
  report interval; retried tasks are counted apart;
- the server frozen mid-report (SIGSTOP, so reports time out and are retried with their
  sequence) counts every task exactly once; so does an acknowledgement lost after the
  server counted the report (a proxy drops the answers): the retry is a duplicate;
- a killed worker turns silent, not healthy.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from stageconfig import ConfigClient, TimingOptions
from stageconfig_contract import __version__
from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.domain import ProviderKind
from tests.fakes.provider_server import FakeProviders
from tests.integration.lossy_proxy import LossyProxy
from tests.integration.support import (
    CeleryWorker,
    TaskClient,
    free_port,
    stack_env,
    unique_queue,
)
from tests.support.servers import ServerProcess, server_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

REPORT_INTERVAL = 1.0
POEM_KEY = "sk-fleet-poem-key-0001"
MODELS = ["gpt-a", "gpt-b", "gpt-c", "gpt-d", "gpt-refused", "gpt-failing"]
"""What the fake OpenAI offers (so every UpdateConfig verifies)."""


@dataclass
class Fleet:
    server: ServerProcess
    stub: pbg.StageConfigServiceStub
    worker: CeleryWorker
    tasks: TaskClient
    plain: ConfigClient
    metrics_port: int
    pids: set[int]

    @property
    def child_ids(self) -> set[str]:
        return {f"{socket.gethostname()}/{pid}" for pid in self.pids}

    def set_poem(self, model: str) -> int:
        request = pb.UpdateConfigRequest(
            stage_type=pb.STAGE_TYPE_POEM,
            provider_kind=pb.PROVIDER_KIND_OPENAI,
            api_key=POEM_KEY,
            model=model,
        )
        revision: int = self.stub.UpdateConfig(request, timeout=10).config.revision
        return revision

    def poem_status(self) -> pb.StageFleetStatus:
        response = self.stub.GetFleetStatus(
            pb.GetFleetStatusRequest(stage_type=pb.STAGE_TYPE_POEM), timeout=10
        )
        (stage,) = response.stages
        return stage

    def revision_status(self, revision: int) -> pb.RevisionFleetStatus | None:
        for entry in self.poem_status().revisions:
            if entry.revision == revision:
                return entry
        return None

    def clients(self) -> dict[str, pb.FleetClient]:
        response = self.stub.GetFleetStatus(pb.GetFleetStatusRequest(), timeout=10)
        return {c.client_id: c for c in response.clients}

    def reports_total(self, result: str) -> float:
        """The server's ``stageconfig_fleet_reports_total{result=…}``."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
        for line in text.splitlines():
            if line.startswith(f'stageconfig_fleet_reports_total{{result="{result}"}}'):
                return float(line.split()[-1])
        return 0.0

    def run_all(self, name: str, count: int, **kwargs: Any) -> list[Any]:
        """``count`` tasks at once; their results (an exception for a failed one)."""
        pending = [
            self.tasks.app.send_task(name, kwargs=kwargs, queue=self.tasks.queue)
            for _ in range(count)
        ]
        return [result.get(timeout=30, propagate=False) for result in pending]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    fake = FakeProviders().start()
    fake.set_models(ProviderKind.OPENAI, MODELS)
    metrics_port = free_port()
    server = ServerProcess(
        server_env(
            tmp / "stageconfig.db",
            fake,
            STAGECONFIG_METRICS_ADDRESS=f"127.0.0.1:{metrics_port}",
        )
    ).start()
    channel = grpc.insecure_channel(server.target)
    stub = pbg.StageConfigServiceStub(channel)
    env = stack_env(
        server.target,
        fake,
        STAGECONFIG_BACKOFF_MAX_SECONDS="1",
        STAGECONFIG_REPORT_INTERVAL_SECONDS=str(REPORT_INTERVAL),
    )
    queue = unique_queue("fleet")
    worker = CeleryWorker(env, queue, concurrency=2)
    tasks = TaskClient(queue)
    plain = ConfigClient(
        server.target,
        client_id="plain-client",
        timing=TimingOptions(report_interval_seconds=REPORT_INTERVAL, backoff_max_seconds=1),
    )
    made = Fleet(server, stub, worker, tasks, plain, metrics_port, set())
    try:
        made.set_poem("gpt-a")
        plain.start()
        worker.start()
        deadline = time.monotonic() + 20
        while len(made.pids) < 2:
            assert time.monotonic() < deadline, f"one pool process never answered: {made.pids}"
            made.pids |= {
                r["pid"] for r in tasks.run_batch("probe.report", 4, stage="POEM", hold=0.2)
            }
        plain.wait_ready(10)
        yield made
    finally:
        plain.close()
        worker.stop()
        tasks.close()
        channel.close()
        server.stop()
        fake.stop()


def test_every_client_acknowledges_the_head_within_two_seconds(fleet: Fleet) -> None:
    expected = {*fleet.child_ids, "plain-client"}
    head = fleet.set_poem("gpt-b")
    started = time.monotonic()

    def acknowledged() -> bool:
        watchers = fleet.stub.ListWatchers(pb.ListWatchersRequest(), timeout=10)
        applied = {w.client_id: w.applied_revision for w in watchers.watchers}
        return all(applied.get(client_id) == head for client_id in expected)

    took = wait_for(acknowledged, 2.0, f"every client's applied_revision at {head}")
    print(f"\nall {len(expected)} clients acknowledged revision {head} in {took:.2f} s")
    watchers = fleet.stub.ListWatchers(pb.ListWatchersRequest(), timeout=10).watchers
    assert {w.client_id for w in watchers if w.nack_revision == 0} >= expected
    clients = fleet.clients()
    for client_id in expected:  # the version each one reports
        assert clients[client_id].client_version == __version__
    assert time.monotonic() - started < 5


def test_a_refused_model_is_nacked_by_both_children_while_tasks_keep_the_previous(
    fleet: Fleet,
) -> None:
    previous = fleet.set_poem("gpt-c")
    wait_for(lambda: fleet.plain.applied_revision == previous, 5, "the plain client applies")
    fleet.run_all("probe.work", 4)  # both children hold revision `previous`
    refused = fleet.set_poem("gpt-refused")

    def nacked_by_both() -> bool:
        status = fleet.revision_status(refused)
        return status is not None and status.nacked == 2

    wait_for(nacked_by_both, 5, f"revision {refused} NACKed by both children")
    status = fleet.revision_status(refused)
    assert status is not None
    assert status.clients == 1  # the plain client, which has no validator, uses it
    assert any("gpt-refused is not allowed" in reason for reason in status.nack_reasons)
    assert POEM_KEY not in " ".join(status.nack_reasons)

    results = fleet.run_all("probe.work", 6)
    assert {r["model"] for r in results} == {"gpt-c"}
    assert {r["revision"] for r in results} == {previous}
    watchers = fleet.stub.ListWatchers(pb.ListWatchersRequest(), timeout=10).watchers
    for watcher in watchers:
        if watcher.client_id in fleet.child_ids:
            assert watcher.nack_revision == refused
            assert "not allowed" in watcher.nack_reason
            assert watcher.applied_revision == refused - 1  # held below what it refused
            assert watcher.last_revision == refused  # what it was sent


def test_failing_tasks_show_as_the_revision_failure_rate_within_one_interval(
    fleet: Fleet,
) -> None:
    failing = fleet.set_poem("gpt-failing")
    wait_for(lambda: fleet.plain.applied_revision == failing, 5, "the plain client applies")
    pending = [fleet.tasks.app.send_task("probe.flaky", queue=fleet.tasks.queue) for _ in range(2)]
    results = fleet.run_all("probe.work", 8)
    assert all(isinstance(r, Exception) for r in results), results
    assert [p.get(timeout=30) for p in pending]
    finished = time.monotonic()

    def counted() -> bool:
        status = fleet.revision_status(failing)
        # The retried tasks' second attempts may land in a later report than the failures.
        return status is not None and (status.failed, status.retried, status.succeeded) == (8, 2, 2)

    took = wait_for(counted, 10, f"revision {failing}'s failures counted")
    print(f"\n8 failed tasks visible in the fleet view {time.monotonic() - finished:.2f} s later")
    status = fleet.revision_status(failing)
    assert status is not None
    assert status.succeeded == 2  # the retried tasks' second attempts
    assert status.failure_rate == pytest.approx(0.8)
    assert dict(status.failures_by_cause) == {"ModelUnavailable": 8}
    assert status.p50_duration_seconds > 0
    # One report interval, plus the time a report takes to arrive on a loaded machine.
    assert took <= REPORT_INTERVAL + 1.0, f"took {took:.2f} s"


def test_reports_retried_while_the_server_is_frozen_are_counted_once(fleet: Fleet) -> None:
    revision = fleet.set_poem("gpt-d")
    wait_for(lambda: fleet.plain.applied_revision == revision, 5, "the plain client applies")
    fleet.run_all("probe.work", 4)
    duplicates = fleet.reports_total("duplicate")
    assert fleet.server.proc is not None
    fleet.server.proc.send_signal(signal.SIGSTOP)  # reports in flight time out, are retried
    try:
        results = fleet.run_all("probe.work", 10)
        time.sleep(2 * REPORT_INTERVAL + 0.5)  # let reports time out and be retried
    finally:
        fleet.server.proc.send_signal(signal.SIGCONT)
    assert {r["revision"] for r in results} == {revision}

    def all_counted() -> bool:
        status = fleet.revision_status(revision)
        return status is not None and status.succeeded >= 14

    wait_for(all_counted, 15, "every task counted")
    time.sleep(3 * REPORT_INTERVAL)  # any late retry would have arrived by now
    status = fleet.revision_status(revision)
    assert status is not None
    assert (status.succeeded, status.failed) == (14, 0)
    retried = fleet.reports_total("duplicate") - duplicates
    print(f"\n{retried:g} reports recognised as retries of counted ones while frozen")


def test_a_lost_acknowledgement_is_retried_and_counted_once(fleet: Fleet) -> None:
    proxy = LossyProxy(fleet.server.target)
    client = ConfigClient(
        proxy.target,
        client_id="lossy-client",
        timing=TimingOptions(report_interval_seconds=REPORT_INTERVAL, backoff_max_seconds=1),
    )
    try:
        client.wait_ready(10)
        wait_for(lambda: client.reports_sent > 0, 5, "the lossy client reports")
        duplicates = fleet.reports_total("duplicate")
        sent = client.reports_sent

        def succeeded() -> int:
            stages = {s.stage_type: s for s in fleet.clients()["lossy-client"].stages}
            return sum(o.succeeded for o in stages[pb.STAGE_TYPE_POEM].outcomes)

        proxy.drop_answers = True
        for _ in range(5):
            client.record_outcome("POEM", ok=True, duration_seconds=0.3)
        # The server counts the report; its answer never arrives.
        wait_for(lambda: succeeded() == 5, 5, "the report counted")
        assert client.reports_sent == sent
        wait_for(lambda: fleet.reports_total("duplicate") > duplicates, 5, "a retry")
        proxy.drop_answers = False
        proxy.cut()  # the client reconnects and retries the report with its sequence
        wait_for(lambda: client.reports_sent > sent, 10, "the retry acknowledged")
        time.sleep(2 * REPORT_INTERVAL)  # a few keepalives more
        assert succeeded() == 5
        assert client.outcomes_dropped == 0
    finally:
        client.close()
        proxy.close()


def test_a_killed_worker_turns_silent(fleet: Fleet) -> None:
    assert fleet.worker.proc is not None
    for pid in fleet.pids:
        os.kill(pid, signal.SIGKILL)
    fleet.worker.proc.kill()
    fleet.worker.proc.wait(10)

    def silent() -> bool:
        clients = fleet.clients()
        return all(clients[c].silent for c in fleet.child_ids)

    wait_for(silent, 10 * REPORT_INTERVAL, "the killed children shown silent")
    clients = fleet.clients()
    assert not clients["plain-client"].silent
    # The children, and any client an earlier test closed (it stopped reporting too).
    assert fleet.poem_status().silent_clients == sum(c.silent for c in clients.values())
    assert fleet.poem_status().silent_clients >= 2
