"""The commands that show what the fleet runs: ``fleet`` (GetFleetStatus: per stage the
revisions in use, NACKs with their reasons, failure rates and durations, silent clients)
and ``watchers`` (every connected stream with the revision it was sent, the revision it
applied, its newest NACK and its last report).

Client ids, hosts, versions, NACK reasons and failure causes come from workers: they are
shown through ``printable`` (no raw control character reaches the terminal) and cut to a
length, and ``--json`` escapes every non-ASCII character. A client that stopped
reporting is shown as SILENT, never counted as holding a revision.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TextIO

from stageconfig.admin import (
    DEFAULT_FLEET_WINDOW,
    AdminClient,
    FleetClient,
    RevisionFleetStatus,
    StageFleetStatus,
    StageReport,
    WatcherInfo,
)
from stageconfig.ctl import output
from stageconfig.ctl.exits import Exit, fail
from stageconfig.ctl.output import age, jsonable, short, table, terminal_width, when
from stageconfig.ctl.routes import fleet_route_lines
from stageconfig.errors import RPCError, StatusCode

_WINDOW = re.compile(r"([1-9][0-9]{0,9})([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}
MAX_WINDOW_SECONDS = 2**31 - 1
"""The widest window the request can carry (``window_seconds`` is an int32); the server
may accept less and says so."""

REASON_LENGTH = 60
"""How much of one NACK reason a line shows."""


def print_ascii_json(value: object, out: TextIO) -> None:
    """One JSON document on one line with every non-ASCII character escaped: what
    workers wrote may hold C1 controls or bidi overrides, which JSON would otherwise
    carry raw to a terminal."""
    out.write(json.dumps(jsonable(value), ensure_ascii=True) + "\n")
    out.flush()


def parse_window(text: str) -> int:
    """A window written ``90s``, ``15m``, ``1h`` or ``2d`` in seconds; anything else (a
    bare number, ``0m``, ``1h30m``, ``15 m``) is an ``ArgumentTypeError``."""
    match = _WINDOW.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"invalid window {text!r}: a whole number and a unit, s, m, h or d (90s, 15m, 1h)"
        )
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_WINDOW_SECONDS:
        raise argparse.ArgumentTypeError(f"invalid window {text!r}: too long")
    return seconds


def window_text(seconds: int) -> str:
    """A window as it would be typed: ``15m``, ``1h``, ``90s``."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def printable(text: str, limit: int | None = None) -> str:
    """``text`` safe for a terminal (``output.printable``: escape sequences, carriage
    returns, bidi overrides written as ``\\x1b``/``\\u202e``), cut to ``limit`` with ``…``."""
    escaped = output.printable(text)
    return escaped if limit is None else short(escaped, limit)


def duration_text(seconds: float) -> str:
    """A bucket bound in seconds: ``1.2 s``, ``0.05 s``; ``∞`` past the last bound."""
    return "∞" if math.isinf(seconds) else f"{seconds:.3g} s"


def causes_text(causes: Mapping[str, int], most: int = 3) -> str:
    """The commonest failure causes, ``TimeoutError 8, ValueError 4 (+2 more)``."""
    ranked = sorted(causes.items(), key=lambda item: (-item[1], item[0]))
    text = ", ".join(f"{printable(cause, 40)} {count}" for cause, count in ranked[:most])
    return f"{text} (+{len(ranked) - most} more)" if len(ranked) > most else text


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def revision_line(stage: StageFleetStatus, rev: RevisionFleetStatus) -> str:
    """One revision of a stage in one line: ``POEM  rev 12  5 clients  NACK 2 (model
    gpt-9 not allowed)  failure 40.0% (12/30)  p50 1.2 s p95 4.8 s``."""
    parts = [stage.stage_type.value, f"rev {rev.revision}", _count(rev.clients, "client")]
    if rev.nacked:
        reasons = "; ".join(printable(r, REASON_LENGTH) for r in rev.nack_reasons)
        parts.append(f"NACK {rev.nacked} ({reasons})" if reasons else f"NACK {rev.nacked}")
    if rev.finished:
        parts.append(f"failure {rev.failure_rate:.1%} ({rev.failed}/{rev.finished})")
    else:
        parts.append("no task finished")
    if rev.retried:
        parts.append(f"retried {rev.retried}")
    if rev.p50_duration_seconds or rev.p95_duration_seconds:
        p50, p95 = rev.p50_duration_seconds, rev.p95_duration_seconds
        parts.append(f"p50 {duration_text(p50)} p95 {duration_text(p95)}")
    if rev.failures_by_cause:
        parts.append(f"causes {causes_text(rev.failures_by_cause)}")
    return "  ".join(parts)


def stage_lines(stage: StageFleetStatus) -> list[str]:
    """A stage's head line (its revision on the server, reporting and silent clients)
    and one line per revision, newest first."""
    name = stage.stage_type.value
    head = [name, f"server rev {stage.revision}" if stage.revision else "not stored"]
    if stage.revisions or stage.silent_clients:
        head.append(f"{_count(stage.reporting_clients, 'client')} reporting")
    else:
        head.append("no client reports this stage")
    if stage.silent_clients:
        head.append(f"{stage.silent_clients} SILENT (no report within 3 intervals)")
    return [
        "  ".join(head),
        *(revision_line(stage, rev) for rev in stage.revisions),
        *fleet_route_lines(stage),
    ]


def _stages_cell(stages: tuple[StageReport, ...]) -> str:
    return " ".join(f"{s.stage_type.value}@{s.revision}" for s in stages) or "-"


def nack_cell(revision: int, reason: str) -> str:
    """``13: model gpt-9 not allowed`` (the reason made printable), ``-`` for none."""
    if not revision:
        return "-"
    return f"{revision}: {printable(reason)}" if reason else str(revision)


def newest_nack(stages: tuple[StageReport, ...]) -> StageReport | None:
    """The stage a client refused the newest revision of (None: it refused none)."""
    refused = [s for s in stages if s.nack_revision]
    return max(refused, key=lambda s: s.nack_revision) if refused else None


def _stage_nack(stages: tuple[StageReport, ...]) -> str:
    newest = newest_nack(stages)
    if newest is None:
        return "-"
    return f"{newest.stage_type.value} {nack_cell(newest.nack_revision, newest.nack_reason)}"


def client_row(client: FleetClient, now: datetime) -> list[str]:
    """One reported client: id, host, pid, version, applied revision, stages, newest
    NACK, last report, and SILENT or reporting."""
    return [
        printable(client.client_id, 48),
        printable(client.host, 32) or "-",
        str(client.pid or "-"),
        printable(client.client_version, 24) or "-",
        str(client.applied_revision),
        _stages_cell(client.stages),
        _stage_nack(client.stages),
        f"{age(client.last_report_time, now)} ago" if client.last_report_time else "never",
        "SILENT" if client.silent else "reporting",
    ]


def cmd_fleet(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """GetFleetStatus: per stage the revisions in use, then every reported client."""
    window = args.window if args.window is not None else DEFAULT_FLEET_WINDOW
    try:
        status = client.fleet_status(args.stage, window_seconds=window)
    except RPCError as error:
        if error.code is not StatusCode.UNIMPLEMENTED:
            raise
        message = f"{client.target} does not serve GetFleetStatus (an older server): upgrade it"
        return fail(Exit.REFUSED, message, args.json, {"code": error.code.name})
    if args.json:
        print_ascii_json(status, out)
        return Exit.OK
    shown = status.window_seconds or window
    out.write(
        f"fleet at head revision {status.head_revision}, "
        f"task outcomes over the last {window_text(shown)}\n"
    )
    for stage in status.stages:
        out.write("\n".join(stage_lines(stage)) + "\n")
    now = datetime.now(UTC)
    if not status.clients:
        out.write("no client has reported\n")
        return Exit.OK
    out.write("\n")
    table(
        ["CLIENT", "HOST", "PID", "VERSION", "APPLIED", "STAGES", "NACK", "LAST REPORT", "STATE"],
        (client_row(c, now) for c in status.clients),
        out,
        width=terminal_width(out),
        cut={0: 1, 5: 1, 6: 2},
    )
    silent = len(status.silent_clients)
    out.write(f"{_count(len(status.clients), 'client')}, {silent} silent\n")
    return Exit.OK


def watcher_row(watcher: WatcherInfo, now: datetime) -> list[str]:
    """One stream of ``watchers``: client, actor, peer, stages, connected, the revision
    sent, the revision applied, the newest NACK, the last report."""
    reported = watcher.last_report_time
    return [
        printable(watcher.client_id, 48) or "-",
        watcher.actor,
        watcher.peer,
        ",".join(s.value for s in watcher.stage_types),
        when(watcher.connected_since),
        str(watcher.last_revision),
        str(watcher.applied_revision) if reported else "-",
        nack_cell(watcher.nack_revision, watcher.nack_reason),
        f"{age(reported, now)} ago" if reported else "never",
    ]


def cmd_watchers(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """Every connected WatchConfig stream: what it was sent and what it applied."""
    listing = client.list_watchers()
    if args.json:
        print_ascii_json(listing, out)
        return Exit.OK
    now = datetime.now(UTC)
    table(
        [
            "CLIENT",
            "ACTOR",
            "PEER",
            "STAGES",
            "CONNECTED",
            "SENT",
            "APPLIED",
            "NACK",
            "LAST REPORT",
        ],
        (watcher_row(w, now) for w in listing.watchers),
        out,
        width=terminal_width(out),
        cut={0: 1, 7: 2},
    )
    out.write(f"{len(listing.watchers)} watcher(s), head revision {listing.head_revision}\n")
    return Exit.OK
