"""Status reports: what this client applied, what it refused and how its tasks went,
sent to the server with ReportStatus from the client's daemon *report* thread.

When: within a second of every applied revision (``wake``; bursts within
``_COALESCE_SECONDS`` make one report), and every ``report_interval_seconds`` even with
nothing new — a keepalive, so the server can tell a silent client (gone) from an idle
one. A report never blocks ``get()``: it is built and sent on this thread only.

Retries and bounds: every new report takes the next ``sequence`` (seeded from the clock
in microseconds, so a restarted process with the same client_id is never taken for a
retry of its predecessor). A report the server did not answer is retried as it is —
same sequence, same counts: the server counts a (client_id, sequence) once — with a
jittered backoff up to the interval, while new outcomes accumulate in the
``OutcomeLedger`` (bounded; the overflow is counted, ``outcomes_dropped``) for the next
report. A report the server refuses for good (an older server without ReportStatus, a
token without the worker role, a report it calls invalid) is dropped, its tasks counted
as dropped, and reporting goes on at the interval.

Each stage's report also carries its routes as this process's breakers saw them
(``_breaker``: state, calls, failovers and openings since the previous report), for the
routes of the config in use that this process has called.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from stageconfig._backoff import Backoff
from stageconfig._breaker import BreakerRegistry, RouteCounts
from stageconfig._outcomes import OutcomeLedger, Outcomes
from stageconfig._store import SnapshotStore
from stageconfig._types import StageType
from stageconfig._validation import Gate
from stageconfig_contract import __version__
from stageconfig_contract.v1 import stage_config_pb2 as pb

if TYPE_CHECKING:
    import grpc

log = logging.getLogger("stageconfig.client")

_COALESCE_SECONDS = 0.1
"""After a wake-up, wait this long so a burst of revisions (a resume) makes one report."""
_FIRST_RETRY_SECONDS = 0.5
_MAX_CALL_SECONDS = 5.0
_INTERRUPT_POLL_SECONDS = 0.05
"""How often a report in flight checks whether the client is closing."""
_FLUSH_CALL_SECONDS = 1.0
"""At close, one last attempt to deliver unsent outcomes, this long at most."""

_SENT, _RETRY, _DROP = "sent", "retry", "drop"
_RETRIED_CODES = frozenset(
    {
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "CANCELLED",
        "RESOURCE_EXHAUSTED",
        "ABORTED",
        "INTERNAL",
        "UNKNOWN",
    }
)
"""Statuses (by name: grpc is imported lazily) after which the same report is retried:
the server is away, busy or failed. Anything else is a refusal retrying cannot change."""


def _route_to_pb(counts: RouteCounts) -> pb.RouteReport:
    return pb.RouteReport(
        route_index=counts.route_index,
        provider_kind=counts.provider_kind.number,  # type: ignore[arg-type]
        api_key_fingerprint=counts.api_key_fingerprint,
        breaker_state=counts.breaker_state.number,  # type: ignore[arg-type]
        succeeded=counts.succeeded,
        failed=counts.failed,
        failovers=counts.failovers,
        breaker_opened=counts.breaker_opened,
        last_failure_cause=counts.last_failure_cause.number,  # type: ignore[arg-type]
    )


def _initial_sequence() -> int:
    return time.time_ns() // 1000


def _outcomes_to_pb(entry: Outcomes) -> pb.TaskOutcomes:
    return pb.TaskOutcomes(
        revision=entry.revision,
        succeeded=entry.succeeded,
        failed=entry.failed,
        retried=entry.retried,
        failures_by_cause=entry.failures_by_cause,
        duration_buckets=entry.duration_buckets,
    )


class Reporter:
    """Builds and sends this client's reports (one thread: ``run``)."""

    def __init__(
        self,
        *,
        client_id: Callable[[], str],
        channel: Callable[[], grpc.Channel],
        store: SnapshotStore,
        gate: Gate,
        ledger: OutcomeLedger,
        interval: float,
        breakers: BreakerRegistry,
    ) -> None:
        self._client_id = client_id
        self._channel = channel
        self._store = store
        self._gate = gate
        self._ledger = ledger
        self._breakers = breakers
        self.interval = interval
        self._init_process_state()

    def _init_process_state(self) -> None:
        self._wake = threading.Event()
        self._sequence = _initial_sequence()
        self._pending: pb.ReportStatusRequest | None = None
        self._pending_outcomes: list[Outcomes] = []
        self._changed = False
        self._overflow = False
        self._refusal_logged: set[int] = set()
        self.sent = 0
        """Reports the server acknowledged (duplicates included)."""

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh event and sequence, nothing of the parent's pending
        (the parent reports its own)."""
        self._init_process_state()

    def wake(self) -> None:
        """Something to report (a revision applied or refused): report within a second."""
        self._changed = True
        self._wake.set()

    def interrupt(self) -> None:
        """Cut the thread's wait short (``close()``: the stop event is set)."""
        self._wake.set()

    # -- the thread --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """The report thread: report on every wake and every interval until ``stop``;
        then one short last attempt for outcomes not delivered yet."""
        backoff = Backoff(_FIRST_RETRY_SECONDS, max(_FIRST_RETRY_SECONDS, self.interval))
        due = time.monotonic() + self.interval
        wake = self._wake
        while not stop.is_set():
            if wake.wait(max(0.0, due - time.monotonic())):
                wake.clear()
                if stop.wait(_COALESCE_SECONDS):
                    break
            elif stop.is_set():
                break
            if self._pending is None and not self._prepare():
                due = time.monotonic() + self.interval
                continue
            outcome = self._send(self._call_seconds(), interrupt=stop)
            if outcome == _RETRY:
                due = time.monotonic() + backoff.next_delay()
                continue
            backoff.reset()
            # A change that came while a report was pending, or outcomes beyond what one
            # report may carry: the next report at once.
            more = self._changed or (self._overflow and outcome == _SENT)
            due = time.monotonic() + (0.0 if more else self.interval)
        if self._pending is not None or len(self._ledger):
            self._flush()

    def _flush(self) -> None:
        if self._pending is None and not self._prepare():
            return
        if self._send(_FLUSH_CALL_SECONDS) == _RETRY:
            self._ledger.discard(self._pending_outcomes)

    def _call_seconds(self) -> float:
        return min(_MAX_CALL_SECONDS, max(1.0, self.interval))

    # -- building and sending ----------------------------------------------------------------

    def _prepare(self) -> bool:
        """Build the next report (a new sequence) from the state now; False when there
        is nothing to report yet (no config held)."""
        snapshot = self._store.current
        if snapshot is None:
            return False
        self._changed = False
        outcomes = self._ledger.drain()
        # Outcomes left behind: more than one report may carry; the next follows at once.
        self._overflow = len(self._ledger) > 0
        by_stage: dict[StageType, list[Outcomes]] = {}
        for entry in outcomes:
            by_stage.setdefault(entry.stage, []).append(entry)
        refusals = self._gate.refusals
        stages = []
        for stage in sorted(self._store.stages):
            config = snapshot.configs.get(stage)
            report = pb.StageReport(
                stage_type=stage.number,  # type: ignore[arg-type]
                revision=config.revision if config is not None else 0,
                outcomes=[_outcomes_to_pb(e) for e in by_stage.get(stage, ())],
            )
            if config is not None:
                # Route counts are drained like outcomes: since the previous report.
                routes = self._breakers.drain(stage, config.routes())
                report.routes.extend(_route_to_pb(r) for r in routes)
            refusal = refusals.get(stage)
            if refusal is not None:
                report.nack_revision = refusal.revision
                report.nack_reason = refusal.reason
            stages.append(report)
        self._sequence += 1
        self._pending = pb.ReportStatusRequest(
            client_id=self._client_id(),
            applied_revision=self._gate.applied_revision(snapshot.revision, snapshot.configs),
            host=socket.gethostname(),
            pid=os.getpid(),
            client_version=__version__,
            stages=stages,
            sequence=self._sequence,
            report_interval_seconds=max(1, math.ceil(self.interval)),
        )
        self._pending_outcomes = outcomes
        return True

    def _send(self, timeout: float, interrupt: threading.Event | None = None) -> str:
        """Send the pending report once: sent, retry (same sequence) or drop.

        ``interrupt`` set (``close()``) cancels the call in flight at once: close must not
        wait out a slow server's deadline (the last, short flush is not interruptible).
        """
        import grpc  # here, not at import: no grpc object may exist before start()

        from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg

        request = self._pending
        assert request is not None
        try:
            stub = pbg.StageConfigServiceStub(self._channel())
            call = stub.ReportStatus.future(request, timeout=timeout)
            finished = threading.Event()
            call.add_done_callback(lambda _: finished.set())
            while not finished.wait(_INTERRUPT_POLL_SECONDS):
                if interrupt is not None and interrupt.is_set():
                    call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves it untyped
                    return _RETRY  # the flush at close sends it once more
            call.result()
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            if code is None or code.name in _RETRIED_CODES:
                log.debug(
                    "stageconfig report %d not delivered (%s); retrying", request.sequence, code
                )
                return _RETRY
            self._drop(code, exc)
            return _DROP
        except ValueError:  # the channel was closed under the call (failover, close)
            return _RETRY
        self.sent += 1
        self._pending = None
        self._pending_outcomes = []
        return _SENT

    def _drop(self, code: grpc.StatusCode, exc: grpc.RpcError) -> None:
        self._ledger.discard(self._pending_outcomes)
        self._pending = None
        self._pending_outcomes = []
        details = exc.details() if callable(getattr(exc, "details", None)) else ""
        value = code.value[0]
        if value in self._refusal_logged:
            return
        self._refusal_logged.add(value)  # once per status code: a keepalive gets the same
        log.warning(
            "stageconfig server refused this client's status report (%s: %s); its task "
            "outcomes are dropped, reporting goes on every %g s",
            code.name,
            details,
            self.interval,
        )
