"""The agent's report relay: worker processes' datagrams in, one ReportStatus per turn
out carrying every process's report (``ReportStatusRequest.processes``, stored by the
server in one transaction) — so the fleet view (GetFleetStatus, ListWatchers) lists
every worker process with its own client_id, host, pid, applied revision, NACKs and task
outcomes, and a burst of 1,000 process reports costs the server one call, not 1,000.

One daemon thread. Reports are held ``_HOLD_SECONDS`` before they are forwarded (the
burst after a publish goes out after the fan-out, spread). Each datagram
(``stageconfig._attached_reports``) becomes a report with the next ``sequence`` of that
client_id (seeded from the clock, as a direct client's). Each turn sends the oldest
queued report of every process, batched (at most 1,024 reports and 1 MiB per call). A
batch the server did not answer is retried as it is (same sequences) at the next turn;
one it refuses for good is dropped. While a process
lives (``kill(pid, 0)``) and sends nothing, its last report is repeated every interval
without outcomes — the keepalive a direct client's report thread would send; a process
that is gone is forgotten.

The socket is the agent's (mode 0600, next to the segment); only the agent's user can
send to it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stageconfig._attached_reports import MAX_DATAGRAM
from stageconfig._types import BreakerState, ProviderKind, StageType, StatusCause
from stageconfig_contract import __version__
from stageconfig_contract.v1 import stage_config_pb2 as pb

if TYPE_CHECKING:
    import grpc

log = logging.getLogger("stageconfig.agent")

_TURN_SECONDS = 0.2
_CALL_SECONDS = 5.0
_MAX_QUEUED = 16
"""Reports of one process waiting for the server; older ones are dropped beyond it."""
_HOLD_SECONDS = (0.3, 1.0)
"""How long a burst of datagrams waits in the socket (uniformly random per agent) before
it is read and forwarded. After a publish every worker process reports at once; held,
the burst is parsed and reaches the server after the fan-out instead of competing with
it for the host's and the server's CPU (a direct client coalesces its reports for the
same reason), and the agents of a fleet do not all report in the same instant."""
_MAX_BATCH = 1024
"""Reports per ReportStatus (the server's bound on ``processes``)."""
_MAX_BATCH_BYTES = 1 << 20
"""Encoded reports per ReportStatus: well under grpc's 4 MiB message bound."""
_RETRIED = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "RESOURCE_EXHAUSTED"})


@dataclass
class _Process:
    """What the relay knows of one worker process."""

    client_id: str
    pid: int
    last: dict[str, Any]
    interval: float
    sequence: int = field(default_factory=lambda: time.time_ns() // 1000)
    queued: list[pb.ReportStatusRequest] = field(default_factory=list)
    sent_at: float = 0.0


def _stage_reports(message: dict[str, Any], with_outcomes: bool) -> list[pb.StageReport]:
    revisions = message.get("revisions", {})
    refusals = message.get("refusals", {})
    outcomes: dict[str, list[pb.TaskOutcomes]] = {}
    for entry in message.get("outcomes", []) if with_outcomes else []:
        outcomes.setdefault(entry["stage"], []).append(
            pb.TaskOutcomes(
                revision=int(entry["revision"]),
                succeeded=int(entry["succeeded"]),
                failed=int(entry["failed"]),
                retried=int(entry["retried"]),
                failures_by_cause={str(k): int(v) for k, v in entry["causes"].items()},
                duration_buckets=[int(b) for b in entry["buckets"]],
            )
        )
    routes = message.get("routes", {})
    reports = []
    for name in message.get("stages", []):
        stage = StageType(name)
        report = pb.StageReport(
            stage_type=stage.number,  # type: ignore[arg-type]
            revision=int(revisions.get(name, 0)),
            outcomes=outcomes.get(name, []),
            # A keepalive repeats the routes' states with no new counts.
            routes=[_route_report(r, with_counts=with_outcomes) for r in routes.get(name, [])],
        )
        refusal = refusals.get(name)
        if refusal:
            report.nack_revision = int(refusal[0])
            report.nack_reason = str(refusal[1])
        reports.append(report)
    return reports


def _route_report(route: dict[str, Any], *, with_counts: bool) -> pb.RouteReport:
    def count(name: str) -> int:
        return int(route.get(name, 0)) if with_counts else 0

    return pb.RouteReport(
        route_index=int(route.get("index", 0)),
        provider_kind=_number(ProviderKind, route.get("provider")),  # type: ignore[arg-type]
        api_key_fingerprint=str(route.get("fingerprint", "")),
        breaker_state=_number(BreakerState, route.get("state")),  # type: ignore[arg-type]
        succeeded=count("succeeded"),
        failed=count("failed"),
        failovers=count("failovers"),
        breaker_opened=count("opened"),
        last_failure_cause=_number(StatusCause, route.get("cause")),  # type: ignore[arg-type]
    )


def _number(kind: Any, name: object) -> int:
    """The proto number of an enum member by name (0, UNSPECIFIED, when unknown)."""
    try:
        return int(kind(name).number)
    except ValueError:
        return 0


class Relay:
    """The socket and the thread that forward worker reports (see the module)."""

    def __init__(self, path: Path, channel: Callable[[], grpc.Channel]) -> None:
        self.path = path
        self._channel = channel
        self._host = socket.gethostname()
        self._processes: dict[str, _Process] = {}
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a dead agent's socket (this agent holds the lock)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        umask = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(umask)
        os.chmod(path, 0o600)
        with contextlib.suppress(OSError):  # room for a burst of 1,000 workers' reports
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._socket = sock
        self.forwarded = 0
        """Reports the server acknowledged."""
        self._batched = True
        """False once the server turned out to predate ``ReportStatusRequest.processes``."""

    @property
    def processes(self) -> int:
        """Worker processes known now."""
        return len(self._processes)

    def run(self, stop: threading.Event) -> None:
        """The relay thread: take datagrams, forward, keep alive, until ``stop``.

        The first datagram of a burst starts the hold; the socket is drained only when it
        ends (the kernel queues the rest), so not even the parsing competes with a
        fan-out in progress."""
        drain_at: float | None = None
        while not stop.is_set():
            if drain_at is None:
                readable, _, _ = select.select([self._socket], [], [], _TURN_SECONDS)
                if readable:
                    drain_at = time.monotonic() + random.uniform(*_HOLD_SECONDS)
            else:
                stop.wait(min(_TURN_SECONDS, max(0.0, drain_at - time.monotonic())))
                if time.monotonic() >= drain_at:
                    self._receive()
                    drain_at = None
            self._keep_alive()
            self._send_queued()
        self._receive()
        self._send_queued()

    def close(self) -> None:
        """Close and remove the socket."""
        self._socket.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _receive(self) -> None:
        """Take every datagram waiting in the socket."""
        while True:
            try:
                data = self._socket.recv(MAX_DATAGRAM, socket.MSG_DONTWAIT)
            except OSError:  # BlockingIOError: drained
                return
            self._take(data)

    def _take(self, data: bytes) -> None:
        try:
            message = json.loads(data)
            client_id = str(message["client_id"])
            pid = int(message["pid"])
            interval = max(1.0, float(message.get("interval", 30.0)))
            process = self._processes.get(client_id)
            if process is None or process.pid != pid:
                process = self._processes[client_id] = _Process(client_id, pid, message, interval)
            process.last, process.interval = message, interval
            self._queue(process, message, with_outcomes=True)
        except (ValueError, KeyError, TypeError) as exc:
            log.debug("stageconfig-agent: an unreadable report datagram (%s)", exc)

    def _queue(self, process: _Process, message: dict[str, Any], *, with_outcomes: bool) -> None:
        process.sequence += 1
        request = pb.ReportStatusRequest(
            client_id=process.client_id,
            applied_revision=int(message.get("applied_revision", 0)),
            host=self._host,
            pid=process.pid,
            client_version=__version__,
            stages=_stage_reports(message, with_outcomes),
            sequence=process.sequence,
            report_interval_seconds=max(1, math.ceil(process.interval)),
        )
        process.queued.append(request)
        del process.queued[:-_MAX_QUEUED]
        process.sent_at = time.monotonic()

    def _keep_alive(self) -> None:
        now = time.monotonic()
        for client_id, process in list(self._processes.items()):
            if now - process.sent_at < process.interval:
                continue
            try:
                os.kill(process.pid, 0)
            except ProcessLookupError:
                del self._processes[client_id]  # gone: the server will call it silent
                continue
            except PermissionError:
                pass
            self._queue(process, process.last, with_outcomes=False)

    def _send_queued(self) -> None:
        """One ReportStatus per batch: the oldest queued report of every process, up to
        ``_MAX_BATCH`` reports and ``_MAX_BATCH_BYTES`` per call (the server stores a
        batch in one transaction). A retried batch repeats each report's sequence."""
        from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg

        try:
            stub = pbg.StageConfigServiceStub(self._channel())
        except ValueError:  # the agent's client is closing
            return
        legacy = not self._batched
        calls = [
            (chunk, stub.ReportStatus.future(_request(chunk, legacy), timeout=_CALL_SECONDS))
            for chunk in _batches([p for p in self._processes.values() if p.queued], legacy)
        ]
        for chunk, call in calls:
            try:
                call.result()
            except Exception as exc:  # a grpc.RpcError, or the channel closed under it
                if not self._refused(chunk, exc, legacy):
                    continue  # the same reports (same sequences) at the next turn
            else:
                self.forwarded += len(chunk)
            for process, request in chunk:
                if process.queued and process.queued[0] is request:
                    process.queued.pop(0)

    def _refused(
        self, chunk: list[tuple[_Process, pb.ReportStatusRequest]], exc: Exception, legacy: bool
    ) -> bool:
        """Whether the failed call's reports are dropped (False: retried as they are)."""
        code_of, details_of = getattr(exc, "code", None), getattr(exc, "details", None)
        code = code_of() if callable(code_of) else None
        if code is None or code.name in _RETRIED:
            return False
        details = str(details_of() or "") if callable(details_of) else ""
        if code.name == "INVALID_ARGUMENT" and not legacy:
            if details.startswith("client_id:"):
                # A server from before ReportStatusRequest.processes saw an empty report:
                # one call per process from now on.
                log.info("stageconfig-agent: the server takes one report per call")
                self._batched = False
                return False
            if (bad := re.match(r"processes\[(\d+)\]", details)) and int(bad[1]) < len(chunk):
                # One process's report is wrong: drop it, send the others again.
                process, request = chunk.pop(int(bad[1]))
                log.warning(
                    "stageconfig-agent: %s's report refused (%s)", process.client_id, details
                )
                if process.queued and process.queued[0] is request:
                    process.queued.pop(0)
                return False
        log.warning(
            "stageconfig-agent: the server refused %d reports (%s: %s); dropped",
            len(chunk),
            code.name,
            details,
        )
        return True


def _request(
    chunk: list[tuple[_Process, pb.ReportStatusRequest]], legacy: bool
) -> pb.ReportStatusRequest:
    """A ReportStatus with no report of its own, carrying the processes' reports (the
    report itself, for a server from before ``processes``)."""
    if legacy:
        return chunk[0][1]
    return pb.ReportStatusRequest(processes=[request for _, request in chunk])


def _batches(
    processes: list[_Process], legacy: bool = False
) -> list[list[tuple[_Process, pb.ReportStatusRequest]]]:
    """The oldest queued report of each process, in chunks the server takes (one report
    each for a server from before ``processes``)."""
    most = 1 if legacy else _MAX_BATCH
    chunks: list[list[tuple[_Process, pb.ReportStatusRequest]]] = []
    size = 0
    for process in processes:
        request = process.queued[0]
        entry = request.ByteSize() + 8  # the field's tag and length
        if not chunks or len(chunks[-1]) >= most or size + entry > _MAX_BATCH_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append((process, request))
        size += entry
    return chunks
