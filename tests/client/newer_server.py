"""A stageconfig server from the future: the same contract, but it sends enum values
(and a kind of message) this client version does not know — what an older worker sees
during a rolling upgrade that updated the servers first.

It is a real grpc server on port 0 running a real ``StageConfigServiceServicer``; the
test scripts what its WatchConfig streams carry: every stream opens with ``snapshot``,
then delivers what ``send`` queued, and heartbeats at the newest revision while idle.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg

HEARTBEAT_SECONDS = 0.4
UNKNOWN = 99
"""An enum value no client of this version knows, in any enum."""

_END_STREAM = object()


def config(
    stage: int,
    provider: int,
    revision: int,
    model: str,
    *,
    status: int = pb.CONFIG_STATUS_ACTIVE,
    cause: int = pb.STATUS_CAUSE_UNSPECIFIED,
    source: int = pb.CONFIG_SOURCE_DATABASE,
) -> pb.StageConfig:
    """A StageConfig message; any enum may be a value this client does not know."""
    return pb.StageConfig(
        stage_type=stage,  # type: ignore[arg-type]
        provider_kind=provider,  # type: ignore[arg-type]
        api_key=f"key-{model}-{revision}",
        model=model,
        revision=revision,
        status=status,  # type: ignore[arg-type]
        status_cause=cause,  # type: ignore[arg-type]
        source=source,  # type: ignore[arg-type]
    )


def change(
    revision: int, stage_config: pb.StageConfig, reason: int = UNKNOWN
) -> pb.WatchConfigResponse:
    """A change message (by default with a change reason this client does not know)."""
    return pb.WatchConfigResponse(
        change=pb.Change(revision=revision, config=stage_config, reason=reason)  # type: ignore[arg-type]
    )


def snapshot(revision: int, *configs: pb.StageConfig) -> pb.WatchConfigResponse:
    """A snapshot message."""
    return pb.WatchConfigResponse(snapshot=pb.Snapshot(revision=revision, configs=configs))


def unknown_event() -> pb.WatchConfigResponse:
    """A message whose oneof holds a field this client's proto does not have (field 15,
    an empty message): a kind of event added after this client was built."""
    return pb.WatchConfigResponse.FromString(bytes([(15 << 3) | 2, 0]))


class NewerServer(pbg.StageConfigServiceServicer):  # type: ignore[misc]
    """WatchConfig as the test scripts it; every other method is UNIMPLEMENTED."""

    def __init__(self, first_snapshot: pb.WatchConfigResponse) -> None:
        self.snapshot = first_snapshot
        """What every new stream opens with (replace it to change what a reconnect gets)."""
        self.requests: list[pb.WatchConfigRequest] = []
        self.heartbeats = 0
        self._head = first_snapshot.snapshot.revision
        self._outbox: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()

    def send(self, message: pb.WatchConfigResponse) -> None:
        """Queue ``message`` for the open stream."""
        kind = message.WhichOneof("event")
        if kind == "change":
            with self._lock:
                self._head = max(self._head, message.change.revision)
        self._outbox.put(message)

    def end_stream(self) -> None:
        """End the open stream once what was queued before is sent (the client
        reconnects and gets ``snapshot`` again)."""
        self._outbox.put(_END_STREAM)

    def WatchConfig(
        self, request: pb.WatchConfigRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchConfigResponse]:
        with self._lock:
            self.requests.append(request)
        yield self.snapshot
        while context.is_active():
            try:
                message = self._outbox.get(timeout=HEARTBEAT_SECONDS)
            except queue.Empty:
                with self._lock:
                    self.heartbeats += 1
                    head = self._head
                yield pb.WatchConfigResponse(heartbeat=pb.Heartbeat(head_revision=head))
                continue
            if message is _END_STREAM:
                return
            yield message


def serve(servicer: NewerServer) -> tuple[grpc.Server, str]:
    """Start a real grpc server for ``servicer`` on a free port; (server, target)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pbg.add_StageConfigServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"
