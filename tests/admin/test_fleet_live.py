"""The fleet view against a real server subprocess: workers' reports sent with a plain grpc
stub and a worker token, then read back through ``AdminClient.fleet_status``,
``stageconfigctl fleet`` / ``watchers`` and the web page's fleet section in headless
Chromium (screenshot ``artifacts/admin-web-fleet.png``).

Two workers report POEM: ``w-applied`` applied the newest revision and ran 30 tasks with
it (12 failed: TimeoutError), ``w-refused`` refused it ("model gpt-9 not allowed") and
keeps the previous one. ``w-gone`` reports once with a 1-second interval and then stops:
it must turn silent, not stay counted as healthy. A retried report is not counted twice.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

import grpc
import pytest
from playwright.sync_api import Browser, ViewportSize, expect

from stageconfig import AdminClient, StageType
from stageconfig.admin import FleetStatus
from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.admin.conftest import (
    ADMIN_TOKEN,
    GEMINI_KEY_A,
    OPENAI_KEY_B,
    WORKER_TOKEN,
    needs_auth,
    run_ctl,
)
from tests.admin.web_process import ARTIFACTS, WebProcess, log_in_in_browser
from tests.support.servers import ServerProcess

pytestmark = needs_auth

NACK_REASON = "model gpt-9 not allowed"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
# 30 durations: 10 up to 1 s, 15 up to 2.5 s, 5 up to 5 s (the contract's buckets 4, 5, 6).
BUCKETS = [0, 0, 0, 0, 10, 15, 5, 0, 0, 0, 0, 0, 0, 0]


@dataclass(frozen=True)
class Fleet:
    """What the module's workers reported against ``server``."""

    server: ServerProcess
    previous: int
    """POEM's revision ``w-refused`` keeps."""
    newest: int
    """POEM's revision ``w-applied`` runs and ``w-refused`` refused."""


def report(target: str, request: pb.ReportStatusRequest) -> pb.ReportStatusResponse:
    """One ReportStatus with the worker token, as a worker's client sends it."""
    with grpc.insecure_channel(target) as channel:
        stub = pbg.StageConfigServiceStub(channel)
        answer: pb.ReportStatusResponse = stub.ReportStatus(
            request, metadata=[("authorization", f"Bearer {WORKER_TOKEN}")], timeout=10
        )
        return answer


def _applied(newest: int, sequence: int) -> pb.ReportStatusRequest:
    outcomes = pb.TaskOutcomes(
        revision=newest,
        succeeded=18,
        failed=12,
        failures_by_cause={"TimeoutError": 12},
        duration_buckets=BUCKETS,
    )
    stage = pb.StageReport(stage_type=pb.STAGE_TYPE_POEM, revision=newest, outcomes=[outcomes])
    return pb.ReportStatusRequest(
        client_id="w-applied",
        applied_revision=newest,
        host="worker-host-a",
        pid=101,
        client_version="test-1",
        stages=[stage],
        sequence=sequence,
        report_interval_seconds=30,
    )


@pytest.fixture(scope="module")
def fleet(token_server: ServerProcess) -> Fleet:
    target = token_server.target
    with AdminClient(target, token=ADMIN_TOKEN, timeout=15) as admin:
        previous = admin.update_config(
            "POEM", "GEMINI", api_key=GEMINI_KEY_A, model="gemini-2.5-flash"
        ).config.revision
        newest = admin.update_config(
            "POEM", "OPENAI", api_key=OPENAI_KEY_B, model="gpt-4o"
        ).config.revision
    assert not report(target, _applied(newest, 1)).duplicate
    refused = pb.StageReport(
        stage_type=pb.STAGE_TYPE_POEM,
        revision=previous,
        nack_revision=newest,
        nack_reason=NACK_REASON,
        outcomes=[pb.TaskOutcomes(revision=previous, succeeded=4)],
    )
    report(
        target,
        pb.ReportStatusRequest(
            client_id="w-refused",
            applied_revision=previous,
            host="worker-host-b",
            pid=202,
            client_version="test-1",
            stages=[refused],
            sequence=1,
            report_interval_seconds=30,
        ),
    )
    gone = pb.StageReport(stage_type=pb.STAGE_TYPE_POEM, revision=newest)
    report(
        target,
        pb.ReportStatusRequest(
            client_id="w-gone",
            applied_revision=newest,
            host="worker-host-c",
            pid=303,
            stages=[gone],
            sequence=1,
            report_interval_seconds=1,
        ),
    )
    return Fleet(token_server, previous, newest)


def _until_gone_is_silent(target: str, deadline_seconds: float = 20) -> FleetStatus:
    deadline = time.monotonic() + deadline_seconds
    with AdminClient(target, token=ADMIN_TOKEN, timeout=10) as admin:
        while True:
            status = admin.fleet_status("POEM")
            gone = [c for c in status.clients if c.client_id == "w-gone"]
            if (gone and gone[0].silent) or time.monotonic() > deadline:
                return status
            time.sleep(0.2)


def test_fleet_status_shows_what_each_revision_does(fleet: Fleet) -> None:
    target = fleet.server.target
    # A retried report (same sequence) is acknowledged, not counted again.
    assert report(target, _applied(fleet.newest, 1)).duplicate
    status = _until_gone_is_silent(target)
    assert status.window_seconds == 900
    poem = status.stage(StageType.POEM)
    assert poem.revision == fleet.newest
    by_revision = {r.revision: r for r in poem.revisions}
    newest, previous = by_revision[fleet.newest], by_revision[fleet.previous]
    assert (newest.clients, newest.nacked, newest.nack_reasons) == (1, 1, (NACK_REASON,))
    assert (newest.succeeded, newest.failed) == (18, 12)  # once, though reported twice
    assert newest.failure_rate == pytest.approx(0.4)
    assert dict(newest.failures_by_cause) == {"TimeoutError": 12}
    assert (newest.p50_duration_seconds, newest.p95_duration_seconds) == (2.5, 5.0)
    assert (previous.clients, previous.succeeded, previous.failed) == (1, 4, 0)
    # w-gone stopped reporting: silent, and not counted as holding the newest revision.
    assert poem.silent_clients == 1
    clients = {c.client_id: c for c in status.clients}
    assert clients["w-gone"].silent
    assert not clients["w-applied"].silent
    assert not clients["w-refused"].silent
    assert (clients["w-refused"].applied_revision, clients["w-refused"].host) == (
        fleet.previous,
        "worker-host-b",
    )


def test_stageconfigctl_fleet_text_and_json(fleet: Fleet) -> None:
    target = fleet.server.target
    _until_gone_is_silent(target)
    result = run_ctl(target, "fleet", "POEM", "--window", "15m")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("task outcomes over the last 15m")
    assert (
        f"POEM  rev {fleet.newest}  1 client  NACK 1 ({NACK_REASON})  failure 40.0% (12/30)  "
        "p50 2.5 s p95 5 s  causes TimeoutError 12"
    ) in lines, result.stdout
    assert f"POEM  rev {fleet.previous}  1 client  failure 0.0% (0/4)" in lines
    assert any("1 SILENT" in line for line in lines if line.startswith("POEM  server"))
    gone = next(line for line in lines if line.startswith("w-gone "))
    assert gone.split()[-1] == "SILENT"
    print(result.stdout)  # the docs' example comes from here

    as_json = run_ctl(target, "--json", "fleet", "--window", "1h")
    assert as_json.code == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["window_seconds"] == 3600
    assert {c["client_id"]: c["silent"] for c in document["clients"]} == {
        "w-applied": False,
        "w-refused": False,
        "w-gone": True,
    }
    too_wide = run_ctl(target, "fleet", "--window", "8d")  # the server keeps 7 days
    assert too_wide.code == 1
    assert "window_seconds" in too_wide.stderr
    worker = run_ctl(target, "fleet", token=WORKER_TOKEN)
    assert worker.code == 5  # the fleet view is for admins


def test_watchers_show_what_a_watching_worker_applied(fleet: Fleet) -> None:
    target = fleet.server.target
    with AdminClient(target, token=ADMIN_TOKEN, timeout=15) as admin:
        stream = admin.watch([StageType.POEM], client_id="w-refused", duration=60)
        try:
            next(stream)  # the snapshot: the stream is registered
            listing = admin.list_watchers()
            (watcher,) = [w for w in listing.watchers if w.client_id == "w-refused"]
            assert watcher.last_revision == fleet.newest  # what it was sent …
            assert watcher.applied_revision == fleet.previous  # … is not what it applied
            assert (watcher.nack_revision, watcher.nack_reason) == (fleet.newest, NACK_REASON)
            assert watcher.last_report_time is not None
            result = run_ctl(target, "watchers")
        finally:
            stream.cancel()
    assert result.code == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("w-refused "))
    assert f"  {fleet.newest}  " in row  # SENT
    assert f"  {fleet.previous}  " in row  # APPLIED
    assert f"{fleet.newest}: {NACK_REASON}" in row
    assert row.rstrip().endswith("ago")


def test_the_web_fleet_section_shows_the_real_fleet(fleet: Fleet, browser: Browser) -> None:
    _until_gone_is_silent(fleet.server.target)
    web = WebProcess(fleet.server.target)
    try:
        page = browser.new_context(viewport=DESKTOP).new_page()
        log_in_in_browser(page, web.url, ADMIN_TOKEN)
        page.get_by_test_id("fleet-link").click()
        page.wait_for_url("**/admin/fleet")
        poem = page.locator("#fleet-POEM")
        newest = poem.locator(f'[data-revision="{fleet.newest}"]')
        expect(newest).to_contain_text("current")
        expect(newest.get_by_test_id("where")).to_have_text("on w-applied")
        expect(newest.get_by_test_id("nack-reason")).to_have_text(NACK_REASON)
        expect(newest.get_by_test_id("failure")).to_have_text("failure 40.0% (12/30)")
        expect(newest.get_by_test_id("durations")).to_have_text("p50 2.5 s · p95 5 s")
        previous = poem.locator(f'[data-revision="{fleet.previous}"]')
        expect(previous.get_by_test_id("where")).to_have_text("on w-refused")
        expect(poem.get_by_test_id("silent-badge")).to_have_text("1 silent")
        expect(poem.get_by_test_id("silent")).to_contain_text("w-gone")
        silent_row = page.locator('tr[data-silent="true"]')
        expect(silent_row).to_have_count(1)
        expect(silent_row).to_contain_text("w-gone")
        expect(silent_row).to_contain_text(re.compile(r"\d+ s ago"))  # not "just now"
        assert GEMINI_KEY_A not in page.content()
        assert OPENAI_KEY_B not in page.content()
        page.screenshot(path=str(ARTIFACTS / "admin-web-fleet.png"), full_page=True)
    finally:
        web.stop()
