"""A server answering GetFleetStatus and ListWatchers from fixed data, with the strings a
hostile or broken worker could send: a real grpc server on port 0, for the rendering of
what the real server only shows after minutes of real reports (a silent client, several
revisions, durations) and for what it should never pass on (escape sequences, markup).

The fleet: POEM at revision 13 on the server, applied by w-1, w-2 and w-5 (12 of 30 tasks
failed, p50 1.2 s, p95 4.8 s) and refused by w-3 ("model gpt-9 not allowed") and w-evil,
which keep 12; w-6 still at 11. VOICE at 9 held by w-1, with w-silent silent; SONG
stored, no client; CLIP not stored. w-evil's id, reason and cause carry an escape sequence, markup
and a bidi override. It checks no token, like a development server; every
GetFleetStatusRequest is kept.
"""

from __future__ import annotations

import threading
from concurrent import futures
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg

EVIL_ID = "w-evil\x1b[31mRED\x1b[0m<b>bold</b>\u202egnp.exe"
EVIL_REASON = "<script>alert(1)</script>\r\nFORGED LINE\x07"
EVIL_CAUSE = "Timeout\x1b]0;pwned\x07Error"
NACK_REASON = "model gpt-9 not allowed"


def _time(ago: timedelta) -> Any:
    stamp = pb.WatcherInfo().last_report_time
    stamp.FromDatetime(datetime.now(UTC) - ago)
    return stamp


def _client(
    client_id: str, stages: list[pb.StageReport], *, silent: bool = False, ago: float = 10
) -> pb.FleetClient:
    client = pb.FleetClient(
        client_id=client_id,
        host="worker-host-1",
        pid=4242,
        client_version="1.4.0",
        applied_revision=max((s.revision for s in stages), default=0),
        silent=silent,
        stages=stages,
    )
    client.last_report_time.CopyFrom(_time(timedelta(seconds=ago)))
    return client


def _poem(revision: int, nack: int = 0, reason: str = "") -> pb.StageReport:
    return pb.StageReport(
        stage_type=pb.STAGE_TYPE_POEM, revision=revision, nack_revision=nack, nack_reason=reason
    )


def fleet_answer() -> pb.GetFleetStatusResponse:
    """The fixed fleet (every stage, a 15-minute window)."""
    poem = pb.StageFleetStatus(
        stage_type=pb.STAGE_TYPE_POEM,
        revision=13,
        revisions=[
            pb.RevisionFleetStatus(
                revision=13,
                clients=3,
                nacked=2,
                nack_reasons=[NACK_REASON, EVIL_REASON],
                succeeded=18,
                failed=12,
                retried=3,
                failure_rate=0.4,
                failures_by_cause={"TimeoutError": 8, "RateLimited": 3, EVIL_CAUSE: 1},
                p50_duration_seconds=1.2,
                p95_duration_seconds=4.8,
            ),
            pb.RevisionFleetStatus(
                revision=12,
                clients=2,
                succeeded=4,
                failure_rate=0.0,
                p50_duration_seconds=0.25,
                p95_duration_seconds=1.0,
            ),
            pb.RevisionFleetStatus(revision=11, clients=1),
        ],
    )
    voice = pb.StageFleetStatus(
        stage_type=pb.STAGE_TYPE_VOICE,
        revision=9,
        revisions=[pb.RevisionFleetStatus(revision=9, clients=1, succeeded=7)],
        silent_clients=1,
    )
    song = pb.StageFleetStatus(stage_type=pb.STAGE_TYPE_SONG, revision=5)
    clip = pb.StageFleetStatus(stage_type=pb.STAGE_TYPE_CLIP)
    voice_9 = pb.StageReport(stage_type=pb.STAGE_TYPE_VOICE, revision=9)
    clients = [
        _client("w-1", [_poem(13), voice_9]),
        _client("w-2", [_poem(13)]),
        _client("w-3", [_poem(12, 13, NACK_REASON)]),
        _client(EVIL_ID, [_poem(12, 13, EVIL_REASON)]),
        _client("w-5", [_poem(13)]),
        _client("w-6", [_poem(11)], ago=20),
        _client("w-silent", [voice_9], silent=True, ago=600),
    ]
    return pb.GetFleetStatusResponse(
        stages=[poem, voice, song, clip], clients=clients, head_revision=14, window_seconds=900
    )


def watchers_answer() -> pb.ListWatchersResponse:
    """Two streams: one that reported (applied 12, a NACK of 13), one that never did."""
    reported = pb.WatcherInfo(
        client_id=EVIL_ID,
        peer="ipv4:127.0.0.1:40001",
        actor="worker",
        stage_types=[pb.STAGE_TYPE_POEM],
        last_revision=13,
        client_version="1.4.0",
        applied_revision=12,
        nack_revision=13,
        nack_reason=EVIL_REASON,
        stages=[_poem(12, 13, EVIL_REASON)],
    )
    reported.connected_since.CopyFrom(_time(timedelta(minutes=5)))
    reported.last_report_time.CopyFrom(_time(timedelta(seconds=4)))
    silent = pb.WatcherInfo(
        client_id="old-client",
        peer="ipv4:127.0.0.1:40002",
        actor="worker",
        stage_types=[pb.STAGE_TYPE_VOICE],
        last_revision=13,
    )
    silent.connected_since.CopyFrom(_time(timedelta(minutes=7)))
    return pb.ListWatchersResponse(watchers=[reported, silent], head_revision=14)


class FleetServicer(pbg.StageConfigServiceServicer):
    """GetFleetStatus, ListWatchers and (for the web login) ListConfigs from fixed data."""

    def __init__(self) -> None:
        self.fleet_requests: list[pb.GetFleetStatusRequest] = []
        self._lock = threading.Lock()

    def ListConfigs(self, request: pb.ListConfigsRequest, context: Any) -> pb.ListConfigsResponse:
        return pb.ListConfigsResponse(head_revision=14)

    def ListWatchers(
        self, request: pb.ListWatchersRequest, context: Any
    ) -> pb.ListWatchersResponse:
        return watchers_answer()

    def GetFleetStatus(
        self, request: pb.GetFleetStatusRequest, context: Any
    ) -> pb.GetFleetStatusResponse:
        with self._lock:
            self.fleet_requests.append(request)
        answer = fleet_answer()
        if request.stage_type:
            kept = [s for s in answer.stages if s.stage_type == request.stage_type]
            del answer.stages[:]
            answer.stages.extend(kept)
        answer.window_seconds = request.window_seconds or 900
        return answer


class FleetServer:
    """``FleetServicer`` served on 127.0.0.1, port 0; ``with`` stops it."""

    def __init__(self) -> None:
        self.servicer = FleetServicer()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pbg.add_StageConfigServiceServicer_to_server(self.servicer, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{port}"

    @property
    def fleet_requests(self) -> list[pb.GetFleetStatusRequest]:
        """Every GetFleetStatusRequest received so far, oldest first."""
        with self.servicer._lock:
            return list(self.servicer.fleet_requests)

    def __enter__(self) -> FleetServer:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop(grace=None).wait(10)
