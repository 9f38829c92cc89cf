"""The floor of the stack: a bare grpc.aio server speaking just enough of the API.

- GetActiveConfig answers every call with one pre-built GetActiveConfigResponse (the
  bytes the stageconfig server returned for the same request, so the size is the same),
  with no interceptor, no auth, no lookup: what any grpc.aio service costs at best.
- WatchConfig / UpdateConfig are the fan-out floor: each stream gets a snapshot, then
  every UpdateConfig writes one pre-built change (same size) to every stream — an
  asyncio.Event per stream and one ``context.write`` per delivery, nothing else.

    python -m bench_lib.bare --response FILE [--address 127.0.0.1:0]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

import grpc

from bench_lib.wire import GET_ACTIVE, UPDATE_CONFIG, WATCH_CONFIG, pb


class _Floor:
    def __init__(self, response: pb.GetActiveConfigResponse) -> None:
        self._response = response
        self._revision = response.config.revision
        self._streams: set[asyncio.Event] = set()
        self._change = b""

    async def get_active(self, request: pb.GetActiveConfigRequest, context: Any) -> Any:
        return self._response

    async def update(self, request: pb.UpdateConfigRequest, context: Any) -> Any:
        self._revision += 1
        config = pb.StageConfig()
        config.CopyFrom(self._response.config)
        config.model = request.model or config.model
        config.revision = self._revision
        self._change = pb.WatchConfigResponse(
            change=pb.Change(revision=self._revision, config=config)
        ).SerializeToString()
        for wakeup in self._streams:
            wakeup.set()
        return pb.UpdateConfigResponse(config=config, written=True)

    async def watch(self, request: pb.WatchConfigRequest, context: Any) -> None:
        wakeup = asyncio.Event()
        self._streams.add(wakeup)
        try:
            snapshot = pb.WatchConfigResponse(
                snapshot=pb.Snapshot(revision=self._revision, configs=[self._response.config])
            )
            await context.write(snapshot.SerializeToString())
            while True:
                await wakeup.wait()
                wakeup.clear()
                await context.write(self._change)
        finally:
            self._streams.discard(wakeup)


def _identity(data: bytes) -> bytes:
    return data


async def serve(response: pb.GetActiveConfigResponse, address: str) -> None:
    """Serve until SIGTERM/SIGINT."""
    floor = _Floor(response)
    service = GET_ACTIVE.rsplit("/", 1)[0].lstrip("/")
    handler = grpc.method_handlers_generic_handler(
        service,
        {
            GET_ACTIVE.rsplit("/", 1)[1]: grpc.unary_unary_rpc_method_handler(
                floor.get_active,
                request_deserializer=pb.GetActiveConfigRequest.FromString,
                response_serializer=pb.GetActiveConfigResponse.SerializeToString,
            ),
            UPDATE_CONFIG.rsplit("/", 1)[1]: grpc.unary_unary_rpc_method_handler(
                floor.update,
                request_deserializer=pb.UpdateConfigRequest.FromString,
                response_serializer=pb.UpdateConfigResponse.SerializeToString,
            ),
            WATCH_CONFIG.rsplit("/", 1)[1]: grpc.unary_stream_rpc_method_handler(
                floor.watch,
                request_deserializer=pb.WatchConfigRequest.FromString,
                response_serializer=_identity,  # pre-encoded, as stageconfig's broadcaster
            ),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(address)
    await server.start()
    print(f"bare listening on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--response", type=Path, required=True)
    parser.add_argument("--address", default="127.0.0.1:0")
    args = parser.parse_args()
    response = pb.GetActiveConfigResponse.FromString(args.response.read_bytes())
    asyncio.run(serve(response, args.address))


if __name__ == "__main__":
    main()
