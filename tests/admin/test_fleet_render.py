"""The fleet view of the admin tools from answers a test controls: ``AdminClient``'s
conversion of GetFleetStatus and ListWatchers (from hand-built messages and over a real
grpc server on port 0, ``fleet_server``), and ``stageconfigctl fleet`` / ``watchers`` as a
user runs them — the window parsed strictly, silent clients shown as silent, and what
workers wrote never reaching the terminal raw."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator

import pytest

from stageconfig import AdminClient, StageType
from stageconfig._admin_convert import fleet_status_from_pb, watchers_from_pb
from stageconfig.ctl.fleet import parse_window, printable, revision_line, window_text
from stageconfig_contract.v1 import stage_config_pb2 as pb
from tests.admin.conftest import run_ctl
from tests.admin.fleet_server import (
    EVIL_CAUSE,
    EVIL_ID,
    EVIL_REASON,
    NACK_REASON,
    FleetServer,
    fleet_answer,
    watchers_answer,
)
from tests.admin.recording_server import RecordingServer

RAW_CONTROLS = [chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, 0x9B, 0x202E)]
"""What must never reach a terminal from a worker's string (a newline ends a line of
ours, so it is allowed only as our own)."""


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetServer]:
    with FleetServer() as server:
        yield server


# -- window parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172_800)]
)
def test_a_window_is_a_number_and_a_unit(text: str, seconds: int) -> None:
    assert parse_window(text) == seconds
    assert parse_window(window_text(seconds)) == seconds


@pytest.mark.parametrize(
    "text", ["", "15", "0m", "-5m", "1h30m", "15 m", "15M", "1.5h", "15min", "m", "99999999999d"]
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_window(text)


# -- conversion ---------------------------------------------------------------------------


def test_fleet_status_keeps_every_field() -> None:
    status, left_out = fleet_status_from_pb(fleet_answer())
    assert left_out == ()
    assert (status.head_revision, status.window_seconds) == (14, 900)
    poem = status.stage(StageType.POEM)
    assert poem.revision == 13
    assert [r.revision for r in poem.revisions] == [13, 12, 11]
    assert poem.reporting_clients == 6
    newest = poem.revisions[0]
    assert (newest.clients, newest.nacked, newest.nack_reasons) == (
        3,
        2,
        (NACK_REASON, EVIL_REASON),
    )
    assert (newest.succeeded, newest.failed, newest.retried, newest.finished) == (18, 12, 3, 30)
    assert newest.failure_rate == pytest.approx(0.4)
    assert dict(newest.failures_by_cause) == {"TimeoutError": 8, "RateLimited": 3, EVIL_CAUSE: 1}
    assert (newest.p50_duration_seconds, newest.p95_duration_seconds) == (1.2, 4.8)
    assert status.stage("VOICE").silent_clients == 1
    assert [c.client_id for c in status.silent_clients] == ["w-silent"]
    w3 = next(c for c in status.clients if c.client_id == "w-3")
    assert (w3.host, w3.pid, w3.client_version, w3.applied_revision) == (
        "worker-host-1",
        4242,
        "1.4.0",
        12,
    )
    assert w3.last_report_time is not None
    (stage,) = w3.stages
    assert (stage.stage_type, stage.revision, stage.nack_revision, stage.nack_reason) == (
        StageType.POEM,
        12,
        13,
        NACK_REASON,
    )


def test_a_stage_of_a_newer_server_is_left_out_not_fatal() -> None:
    answer = fleet_answer()
    answer.stages.add(stage_type=99, revision=14)  # a stage this client cannot name
    answer.clients[0].stages.add(stage_type=99, revision=14)
    status, left_out = fleet_status_from_pb(answer)
    assert [s.stage_type.value for s in status.stages] == ["POEM", "VOICE", "SONG", "CLIP"]
    assert [u.value for u in left_out] == [99]
    assert [s.stage_type for s in status.clients[0].stages] == [StageType.POEM, StageType.VOICE]


def test_watchers_carry_what_the_client_applied_and_refused() -> None:
    listing = watchers_from_pb(watchers_answer())
    reported, never = listing.watchers
    assert (reported.last_revision, reported.applied_revision) == (13, 12)
    assert (reported.nack_revision, reported.nack_reason) == (13, EVIL_REASON)
    assert reported.client_version == "1.4.0"
    assert reported.last_report_time is not None
    assert [(s.stage_type, s.revision) for s in reported.stages] == [(StageType.POEM, 12)]
    # A client that never reported: nothing claimed for it.
    assert (never.applied_revision, never.nack_revision, never.last_report_time) == (0, 0, None)
    assert never.stages == ()


def test_an_older_servers_watchers_still_read() -> None:
    old = pb.ListWatchersResponse(
        watchers=[pb.WatcherInfo(client_id="w", stage_types=[pb.STAGE_TYPE_POEM], last_revision=3)]
    )
    (watcher,) = watchers_from_pb(old).watchers
    assert (watcher.applied_revision, watcher.last_report_time, watcher.stages) == (0, None, ())


# -- rendering ----------------------------------------------------------------------------


def test_a_revision_reads_as_one_line() -> None:
    status, _ = fleet_status_from_pb(fleet_answer())
    poem = status.stage("POEM")
    reasons = printable(EVIL_REASON)
    assert revision_line(poem, poem.revisions[0]).startswith(
        f"POEM  rev 13  3 clients  NACK 2 ({NACK_REASON}; {reasons})  failure 40.0% (12/30)  "
        "retried 3  p50 1.2 s p95 4.8 s  causes TimeoutError 8, RateLimited 3, "
    )
    assert revision_line(poem, poem.revisions[2]) == "POEM  rev 11  1 client  no task finished"


def test_printable_escapes_controls_and_keeps_the_rest() -> None:
    assert printable("mödel ✓ ok") == "mödel ✓ ok"
    assert printable("a\x1b[31mb\r\nc\u202ed") == "a\\x1b[31mb\\x0d\\x0ac\\u202ed"
    assert printable("x" * 100, 10) == "x" * 9 + "…"


# -- AdminClient and stageconfigctl over grpc -----------------------------------------------


def test_fleet_status_sends_the_stage_and_window(fleet: FleetServer) -> None:
    with AdminClient(fleet.target, timeout=10) as admin:
        status = admin.fleet_status("POEM", window_seconds=3600)
        everything = admin.fleet_status()
        with pytest.raises(ValueError, match="window_seconds"):
            admin.fleet_status(window_seconds=0)
    assert [s.stage_type for s in status.stages] == [StageType.POEM]
    assert status.window_seconds == 3600
    assert len(everything.stages) == 4
    sent = [(r.stage_type, r.window_seconds) for r in fleet.fleet_requests[-2:]]
    assert sent == [(pb.STAGE_TYPE_POEM, 3600), (pb.STAGE_TYPE_UNSPECIFIED, 900)]


def _assert_no_raw_control(text: str) -> None:
    body = text.replace("\n", "")
    found = [hex(ord(c)) for c in RAW_CONTROLS if c in body]
    assert found == [], f"raw control characters reached the terminal: {found}"


def test_fleet_shows_revisions_nacks_failures_and_silent_clients(fleet: FleetServer) -> None:
    result = run_ctl(fleet.target, "fleet", token=None)
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "fleet at head revision 14, task outcomes over the last 15m"
    assert "POEM  server rev 13  6 clients reporting" in lines
    assert any(
        line.startswith(
            f"POEM  rev 13  3 clients  NACK 2 ({NACK_REASON}; <script>alert(1)</script>\\x0d"
        )
        and "failure 40.0% (12/30)" in line
        and "p50 1.2 s p95 4.8 s" in line
        for line in lines
    ), result.stdout
    assert "POEM  rev 12  2 clients  failure 0.0% (0/4)  p50 0.25 s p95 1 s" in lines
    assert "VOICE  server rev 9  1 client reporting  1 SILENT (no report within 3 intervals)" in (
        lines
    )
    assert "SONG  server rev 5  no client reports this stage" in lines
    assert "CLIP  not stored  no client reports this stage" in lines
    header = next(line for line in lines if line.startswith("CLIENT"))
    assert header.split() == [
        "CLIENT", "HOST", "PID", "VERSION", "APPLIED", "STAGES", "NACK", "LAST", "REPORT", "STATE"
    ]  # fmt: skip
    silent = next(line for line in lines if line.startswith("w-silent "))
    assert silent.split()[-1] == "SILENT"
    w3 = next(line for line in lines if line.startswith("w-3 "))
    assert f"POEM 13: {NACK_REASON}" in w3
    assert w3.split()[-1] == "reporting"
    assert lines[-1] == "7 clients, 1 silent"
    # What the worker wrote is there, escaped: never raw, never able to forge a line.
    assert printable(EVIL_ID) in result.stdout
    assert not any(line.startswith("FORGED") for line in lines)
    _assert_no_raw_control(result.stdout)


def test_fleet_of_one_stage_over_a_window(fleet: FleetServer) -> None:
    result = run_ctl(fleet.target, "fleet", "voice", "--window", "1h", token=None)
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith("over the last 1h")
    assert "POEM" not in "".join(line[:5] for line in result.stdout.splitlines()[:4])
    last = fleet.fleet_requests[-1]
    assert (last.stage_type, last.window_seconds) == (pb.STAGE_TYPE_VOICE, 3600)


@pytest.mark.parametrize("window", ["15", "0m", "1h30m", "soon"])
def test_a_bad_window_is_a_usage_error_and_sends_nothing(fleet: FleetServer, window: str) -> None:
    before = len(fleet.fleet_requests)
    text = run_ctl(fleet.target, "fleet", "--window", window, token=None)
    assert text.code == 2
    assert "invalid window" in text.stderr
    as_json = run_ctl(fleet.target, "fleet", "--window", window, "--json", token=None)
    assert as_json.code == 2
    error = json.loads(as_json.stderr)["error"]
    assert error["exit_code"] == 2
    assert "invalid window" in error["message"]
    assert len(fleet.fleet_requests) == before


def test_fleet_json_is_the_whole_answer_in_ascii(fleet: FleetServer) -> None:
    result = run_ctl(fleet.target, "--json", "fleet", token=None)
    assert result.code == 0, result.stderr
    assert result.stdout.isascii()
    document = json.loads(result.stdout)
    assert document["window_seconds"] == 900
    poem = document["stages"][0]
    assert (poem["stage_type"], poem["revisions"][0]["failure_rate"]) == ("POEM", 0.4)
    assert poem["revisions"][0]["nack_reasons"] == [NACK_REASON, EVIL_REASON]
    silent = [c["client_id"] for c in document["clients"] if c["silent"]]
    assert silent == ["w-silent"]
    assert EVIL_ID in [c["client_id"] for c in document["clients"]]  # exact, once decoded


def test_watchers_show_sent_applied_nack_and_last_report(fleet: FleetServer) -> None:
    result = run_ctl(fleet.target, "watchers", token=None)
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "CLIENT", "ACTOR", "PEER", "STAGES", "CONNECTED",
        "SENT", "APPLIED", "NACK", "LAST", "REPORT",
    ]  # fmt: skip
    reported = lines[1]
    assert reported.startswith(printable(EVIL_ID))
    assert "  13    12       13: <script>alert(1)</script>\\x0d\\x0aFORGED LINE\\x07" in reported
    assert reported.endswith("4s ago") or reported.endswith("5s ago")
    never = lines[2].split()
    assert never[0] == "old-client"
    assert never[-4:] == ["13", "-", "-", "never"]  # sent 13; applied, NACK: none claimed
    _assert_no_raw_control(result.stdout)
    as_json = run_ctl(fleet.target, "watchers", "--json", token=None)
    (first, second) = json.loads(as_json.stdout)["watchers"]
    assert (first["applied_revision"], first["nack_revision"]) == (12, 13)
    assert second["last_report_time"] is None


def test_the_library_logs_nothing_for_a_known_answer(
    fleet: FleetServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="stageconfig"), AdminClient(fleet.target) as admin:
        admin.fleet_status()
    assert caplog.records == []


def test_an_older_server_without_fleet_status_is_named() -> None:
    with RecordingServer() as older:  # answers GetFleetStatus UNIMPLEMENTED
        text = run_ctl(older.target, "fleet", token=None)
        as_json = run_ctl(older.target, "fleet", "--json", token=None)
    assert text.code == 1
    assert text.stderr.strip() == (
        f"stageconfigctl: {older.target} does not serve GetFleetStatus (an older server): "
        "upgrade it"
    )
    assert json.loads(as_json.stderr)["error"]["code"] == "UNIMPLEMENTED"
