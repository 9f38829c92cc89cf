"""An attached process's status reports: one datagram to the agent's unix socket
(``<segment>.sock``), which the agent turns into a ReportStatus of this process's own
(``stageconfig.agent._relay``) — so the fleet view lists every worker process, not the
agent only. No grpc, no protobuf, no thread.

When: ``due()`` is checked on the caller's thread — from ``record_outcome`` and from
the read that noticed a new generation — and a report goes out when the interval has
elapsed, or at once when the applied revision or a refusal changed. The agent repeats a
known process's last report as a keepalive while the process lives, so an idle worker
stays listed without sending anything.

The message is JSON (≤ 64 KiB: at most ``PER_STAGE_IN_A_REPORT`` outcome entries per
stage, as in a direct client's report); a datagram the agent cannot take (the agent is
down or restarting) leaves its outcomes pending for the next attempt, bounded by
``_MAX_PENDING`` entries (the overflow counts as dropped).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stageconfig._outcomes import OutcomeLedger, Outcomes
from stageconfig._types import StageConfig, StageType
from stageconfig._validation import Refusal

if TYPE_CHECKING:
    from stageconfig._breaker import RouteCounts

MESSAGE_VERSION = 1
MAX_DATAGRAM = 65_536
_MAX_PENDING = 64


def outcome_to_dict(entry: Outcomes) -> dict[str, Any]:
    """One outcome entry as the datagram carries it."""
    return {
        "stage": entry.stage.value,
        "revision": entry.revision,
        "succeeded": entry.succeeded,
        "failed": entry.failed,
        "retried": entry.retried,
        "causes": dict(entry.failures_by_cause),
        "buckets": list(entry.duration_buckets),
    }


def route_to_dict(counts: RouteCounts) -> dict[str, Any]:
    """One route's breaker and counts since the previous report, as the datagram carries
    it (the agent turns it into a RouteReport)."""
    return {
        "index": counts.route_index,
        "provider": counts.provider_kind.value,
        "fingerprint": counts.api_key_fingerprint,
        "state": counts.breaker_state.value,
        "succeeded": counts.succeeded,
        "failed": counts.failed,
        "failovers": counts.failovers,
        "opened": counts.breaker_opened,
        "cause": counts.last_failure_cause.value,
    }


def _route_reports(
    configs: Mapping[StageType, StageConfig], stages: frozenset[StageType]
) -> dict[str, list[dict[str, Any]]]:
    """This process's route breakers per stage, drained. Only a process that routed
    calls (``run_with_fallback``) has loaded ``_breaker``; the others have nothing to
    report and do not pay for importing it (hashlib's OpenSSL, email.utils: ~5 MB)."""
    breakers = sys.modules.get("stageconfig._breaker")
    if breakers is None:
        return {}
    registry = breakers.default_registry()
    return {
        s.value: [route_to_dict(r) for r in registry.drain(s, c.routes())]
        for s, c in configs.items()
        if s in stages
    }


class ReportSender:
    """Builds and sends this process's report datagrams (caller's thread, non-blocking)."""

    def __init__(self, socket_path: Path, client_id: str, interval: float) -> None:
        self.socket_path = socket_path
        self.client_id = client_id
        self.interval = interval
        self._socket: socket.socket | None = None
        self._due = 0.0
        self._last_key: object = None
        self._pending: list[Outcomes] = []
        self.sent = 0
        """Datagrams the agent's socket took."""
        self.dropped = 0
        """Tasks whose outcomes were discarded unsent (over the pending bound)."""

    def reset_after_fork(self, client_id: str) -> None:
        """In a forked child: its own socket and id, nothing of the parent's pending."""
        self._socket = None
        self.client_id = client_id
        self._pending = []
        self._due = 0.0
        self._last_key = None
        self.sent = self.dropped = 0

    def maybe_send(
        self,
        *,
        ledger: OutcomeLedger,
        applied_revision: int,
        configs: Mapping[StageType, StageConfig],
        stages: frozenset[StageType],
        refusals: Mapping[StageType, Refusal],
        force: bool = False,
    ) -> bool:
        """Send a report when one is due: the interval elapsed, or what this process
        applied or refused changed since the last one (``force`` too)."""
        key = (applied_revision, tuple(sorted((s.value, r.revision) for s, r in refusals.items())))
        now = time.monotonic()
        if not force and key == self._last_key and now < self._due:
            return False
        outcomes = self._pending + ledger.drain()
        message = {
            "v": MESSAGE_VERSION,
            "client_id": self.client_id,
            "pid": os.getpid(),
            "stages": sorted(s.value for s in stages),
            "applied_revision": applied_revision,
            "revisions": {s.value: c.revision for s, c in configs.items() if s in stages},
            "refusals": {s.value: [r.revision, r.reason] for s, r in refusals.items()},
            "outcomes": [outcome_to_dict(e) for e in outcomes],
            # This process's route breakers (fallback routing), drained like outcomes;
            # counts of a datagram the agent does not take are not kept (a breaker's
            # state is sent again with the next one).
            "routes": _route_reports(configs, stages),
            "interval": self.interval,
        }
        data = json.dumps(message, separators=(",", ":")).encode()
        self._due = now + self.interval
        if self._send(data):
            self._pending = []
            self._last_key = key
            self.sent += 1
            return True
        self._pending = outcomes[-_MAX_PENDING:]
        self.dropped += sum(e.tasks for e in outcomes[:-_MAX_PENDING])
        self._due = now + min(1.0, self.interval)  # the agent may be back soon
        return False

    def _send(self, data: bytes) -> bool:
        try:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._socket = sock
            self._socket.sendto(data, str(self.socket_path))
        except OSError:  # no agent (ENOENT, ECONNREFUSED) or its queue is full (EAGAIN)
            return False
        return True

    def close(self) -> None:
        """Close the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
