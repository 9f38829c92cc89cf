"""The fleet page (``GET /admin/fleet?window=15m``): per stage, which revisions are live
on which clients, the NACKs with their reasons, the failure rate and durations per
revision, and the clients that stopped reporting — shown as silent, never as healthy.

Read only (no form changes anything, so no CSRF token is needed; the window is a GET
parameter). Every string a worker sent (client ids, hosts, versions, NACK reasons, failure
causes) goes through ``printable`` before the template escapes it, so neither markup nor
a control character (a bidi override, an escape sequence) reaches the page as such.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response

from stageconfig import RPCError, StatusCode, UnavailableError
from stageconfig.admin import (
    DEFAULT_FLEET_WINDOW,
    FleetClient,
    FleetStatus,
    RevisionFleetStatus,
    StageFleetStatus,
)
from stageconfig.ctl.fleet import (
    causes_text,
    duration_text,
    newest_nack,
    parse_window,
    printable,
    window_text,
)
from stageconfig_web.pages import AdminWeb, LoggedOut
from stageconfig_web.sessions import Session

WINDOW_CHOICES = ("5m", "15m", "1h", "6h", "1d")
"""The windows the page's select offers (``?window=`` takes any ``stageconfigctl``
window)."""
SHOWN_CLIENTS = 6
"""Client ids listed per revision before ``+N more``."""


@dataclass
class RevisionRow:
    """One revision of a stage as the page shows it."""

    revision: int
    current: bool
    """The stage's revision on the server."""
    clients: int
    where: list[str]
    """The reporting clients holding it (at most SHOWN_CLIENTS), printable."""
    more: int
    """How many more hold it."""
    nacked: int
    reasons: list[str]
    failure: str
    """``failure 40.0% (12/30)``, or ``no task finished``."""
    failing: bool
    """Some task failed with it (the cell is highlighted)."""
    retried: int
    durations: str
    causes: str


@dataclass
class StageSection:
    """One stage's section."""

    stage: str
    revision: int
    reporting: int
    silent: int
    silent_ids: list[str]
    rows: list[RevisionRow] = field(default_factory=list)
    route_health: str = ""
    """How the stage's fallback routes fare, in one line ("" when none is reported)."""


@dataclass
class ClientRow:
    """One reported client in the clients table."""

    client_id: str
    host: str
    pid: str
    version: str
    applied: int
    stages: str
    last_report: datetime | None
    silent: bool
    nack: str
    """The newest refusal over its stages, ``POEM 13: reason`` (empty: none)."""


def _holders(status: FleetStatus, stage: StageFleetStatus, revision: int) -> list[str]:
    return [
        printable(c.client_id, 48)
        for c in status.clients
        if not c.silent
        and any(s.stage_type is stage.stage_type and s.revision == revision for s in c.stages)
    ]


def _row(status: FleetStatus, stage: StageFleetStatus, rev: RevisionFleetStatus) -> RevisionRow:
    holders = _holders(status, stage, rev.revision)
    durations = ""
    if rev.p50_duration_seconds or rev.p95_duration_seconds:
        durations = (
            f"p50 {duration_text(rev.p50_duration_seconds)} · "
            f"p95 {duration_text(rev.p95_duration_seconds)}"
        )
    return RevisionRow(
        revision=rev.revision,
        current=rev.revision == stage.revision,
        clients=rev.clients,
        where=holders[:SHOWN_CLIENTS],
        more=max(0, rev.clients - min(len(holders), SHOWN_CLIENTS)),
        nacked=rev.nacked,
        reasons=[printable(r, 200) for r in rev.nack_reasons],
        failure=(
            f"failure {rev.failure_rate:.1%} ({rev.failed}/{rev.finished})"
            if rev.finished
            else "no task finished"
        ),
        failing=rev.failed > 0,
        retried=rev.retried,
        durations=durations,
        causes=causes_text(rev.failures_by_cause) if rev.failures_by_cause else "",
    )


def _silent_ids(clients: Sequence[FleetClient], stage: StageFleetStatus) -> list[str]:
    return [
        printable(c.client_id, 48)
        for c in clients
        if c.silent and any(s.stage_type is stage.stage_type for s in c.stages)
    ]


def sections(status: FleetStatus) -> list[StageSection]:
    """The page's stage sections from a GetFleetStatus answer."""
    return [
        StageSection(
            stage=stage.stage_type.value,
            revision=stage.revision,
            reporting=stage.reporting_clients,
            silent=stage.silent_clients,
            silent_ids=_silent_ids(status.clients, stage),
            rows=[_row(status, stage, rev) for rev in stage.revisions],
            route_health=stage.route_health,
        )
        for stage in status.stages
    ]


def _newest_nack(client: FleetClient) -> str:
    newest = newest_nack(client.stages)
    if newest is None:
        return ""
    reason = printable(newest.nack_reason, 200)
    head = f"{newest.stage_type.value} {newest.nack_revision}"
    return f"{head}: {reason}" if reason else head


def client_rows(status: FleetStatus) -> list[ClientRow]:
    """The clients table, silent ones first (they need a look)."""
    ordered = sorted(status.clients, key=lambda c: (not c.silent, c.client_id))
    return [
        ClientRow(
            client_id=printable(c.client_id, 64),
            host=printable(c.host, 64),
            pid=str(c.pid) if c.pid else "",
            version=printable(c.client_version, 32),
            applied=c.applied_revision,
            stages=", ".join(f"{s.stage_type.value} {s.revision}" for s in c.stages),
            last_report=c.last_report_time,
            silent=c.silent,
            nack=_newest_nack(c),
        )
        for c in ordered
    ]


class FleetPages:
    """GET /admin/fleet."""

    def __init__(self, web: AdminWeb) -> None:
        self.web = web

    async def fleet(self, request: Request) -> Response:
        """GET /admin/fleet[?window=15m]."""
        web = self.web
        session = web.session(request)
        if session is None or session.client is None:
            return web.redirect("/login")
        text = request.query_params.get("window", "")
        try:
            window = parse_window(text) if text else DEFAULT_FLEET_WINDOW
        except argparse.ArgumentTypeError as error:
            return self._error(request, session, text, str(error), 400)
        try:
            status = await web.call(session, session.client.fleet_status, None, window)
        except LoggedOut as out:
            return web.login_again(str(out))
        except RPCError as error:
            if error.code is StatusCode.UNIMPLEMENTED:
                message = (
                    f"The stageconfig server at {web.settings.target} does not report fleet "
                    "status yet (it is older than this page): upgrade it."
                )
                return self._error(request, session, text, message, 501)
            message = (
                f"The stageconfig server at {web.settings.target} did not answer: {error.message}"
            )
            code = 503 if isinstance(error, UnavailableError) else 502
            return self._error(request, session, text, message, code)
        return web.render(
            request,
            session,
            "fleet.html",
            window=window_text(status.window_seconds or window),
            choices=WINDOW_CHOICES,
            head_revision=status.head_revision,
            sections=sections(status),
            clients=client_rows(status),
            silent_total=len(status.silent_clients),
            flashes=session.take_flashes(),
        )

    def _error(
        self, request: Request, session: Session, window: str, message: str, status: int
    ) -> Response:
        return self.web.render(
            request,
            session,
            "fleet.html",
            status=status,
            window=window if window in WINDOW_CHOICES else window_text(DEFAULT_FLEET_WINDOW),
            choices=WINDOW_CHOICES,
            head_revision=None,
            sections=[],
            clients=[],
            silent_total=0,
            page_error=message,
        )
