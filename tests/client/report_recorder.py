"""A server that records the ReportStatus requests it gets: a real grpc server on port 0
serving WatchConfig as the test scripts it (``NewerServer``) and ReportStatus with the
contract's idempotency — a (client_id, sequence) at or below the highest one seen is
acknowledged as a duplicate and not counted.

The test can make it fail: ``fail_next`` answers UNAVAILABLE to that many reports
without counting them (the server is away), ``lose_answers`` counts that many and then
answers UNAVAILABLE (the acknowledgement is lost), and ``hold`` keeps every ReportStatus
waiting until it is set (a server that does not answer).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import grpc

from stageconfig_contract.v1 import stage_config_pb2 as pb
from tests.client.newer_server import NewerServer


@dataclass(frozen=True)
class Received:
    """One ReportStatus call as it arrived."""

    at: float
    """time.monotonic() on arrival."""
    request: pb.ReportStatusRequest
    counted: bool
    """Whether this call was counted (a new sequence, not failed before counting)."""


class ReportRecorder(NewerServer):
    """NewerServer's WatchConfig plus a recording ReportStatus."""

    def __init__(self, first_snapshot: pb.WatchConfigResponse) -> None:
        super().__init__(first_snapshot)
        self.received: list[Received] = []
        self.fail_next = 0
        self.lose_answers = 0
        self.hold = threading.Event()
        self.hold.set()
        self.arrivals = 0
        """ReportStatus calls that arrived (held ones included)."""
        self._highest: dict[str, int] = {}
        self._report_lock = threading.Lock()

    def ReportStatus(
        self, request: pb.ReportStatusRequest, context: grpc.ServicerContext
    ) -> pb.ReportStatusResponse:
        with self._lock:
            self.arrivals += 1
        self.hold.wait(30)
        with self._report_lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                self.received.append(Received(time.monotonic(), request, False))
                context.abort(grpc.StatusCode.UNAVAILABLE, "away")
            duplicate = request.sequence <= self._highest.get(request.client_id, 0)
            if not duplicate:
                self._highest[request.client_id] = request.sequence
            self.received.append(Received(time.monotonic(), request, not duplicate))
            if self.lose_answers > 0:
                self.lose_answers -= 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "answer lost")
        return pb.ReportStatusResponse(duplicate=duplicate)

    # -- what the tests read ---------------------------------------------------------------

    def reports(self) -> list[pb.ReportStatusRequest]:
        """Every report that arrived, retries and duplicates included."""
        with self._report_lock:
            return [r.request for r in self.received]

    def counted(self) -> list[pb.ReportStatusRequest]:
        """The reports counted once each (what a correct server aggregates)."""
        with self._report_lock:
            return [r.request for r in self.received if r.counted]

    def last(self) -> pb.ReportStatusRequest | None:
        """The newest report that arrived."""
        with self._report_lock:
            return self.received[-1].request if self.received else None

    def stage(self, report: pb.ReportStatusRequest, stage: int) -> pb.StageReport:
        """One stage of ``report``."""
        for entry in report.stages:
            if entry.stage_type == stage:
                return entry
        raise AssertionError(f"stage {stage} not in the report: {report}")

    def tasks_counted(self, stage: int) -> tuple[int, int, int]:
        """(succeeded, failed, retried) of ``stage`` over every counted report."""
        totals = [0, 0, 0]
        for report in self.counted():
            for outcome in self.stage(report, stage).outcomes:
                totals[0] += outcome.succeeded
                totals[1] += outcome.failed
                totals[2] += outcome.retried
        return totals[0], totals[1], totals[2]
