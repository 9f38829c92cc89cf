"""A hostile HTTP/2 client in a few lines: it opens gRPC streams and never reads.

It announces a stream flow-control window of ``window`` bytes (0: the server may send
no DATA at all) and never sends WINDOW_UPDATE, so every message the server writes stalls
in the server's buffers — what a client that stops reading looks like on the wire, with
as many streams on one connection as it likes. It answers SETTINGS and PING (it is not
dead, just greedy) and records every frame type it receives, so a test can see the
server's status trailers, RST_STREAM, GOAWAY and the connection closing.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0, 1, 3, 4, 6, 7
_ACK, _END_STREAM, _END_HEADERS = 0x1, 0x1, 0x4
_SETTINGS_INITIAL_WINDOW_SIZE = 4


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    header = struct.pack(">I", len(payload))[1:] + bytes([kind, flags])
    return header + struct.pack(">I", stream) + payload


def _literal(name: bytes, value: bytes) -> bytes:
    # HPACK "literal header field without indexing, new name", no Huffman coding.
    assert len(name) < 127
    assert len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


class GreedyClient:
    """One HTTP/2 connection that opens unary-request gRPC calls and reads nothing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.frames: list[tuple[int, int]] = []
        """(frame type, stream id) of every frame received, in order."""
        self.closed = asyncio.Event()
        """Set when the server closed the connection."""
        self._next_stream = 1
        self._pump = asyncio.create_task(self._read_frames())

    @classmethod
    async def connect(cls, host: str, port: int, *, window: int = 0) -> GreedyClient:
        """Connect and announce a stream window of ``window`` bytes."""
        reader, writer = await asyncio.open_connection(host, port)
        settings = struct.pack(">HI", _SETTINGS_INITIAL_WINDOW_SIZE, window)
        writer.write(PREFACE + _frame(SETTINGS, 0, 0, settings))
        await writer.drain()
        return cls(reader, writer)

    def call(self, path: str, authority: str, request: bytes, token: str | None = None) -> int:
        """Start a call of ``path`` with one request message; returns its stream id."""
        stream = self._next_stream
        self._next_stream += 2
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", authority.encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]
        if token is not None:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        block = b"".join(_literal(name, value) for name, value in headers)
        message = b"\x00" + struct.pack(">I", len(request)) + request
        self._writer.write(
            _frame(HEADERS, _END_HEADERS, stream, block)
            + _frame(DATA, _END_STREAM, stream, message)
        )
        return stream

    def received(self, kind: int) -> set[int]:
        """The streams (0: the connection) that received a frame of ``kind``."""
        return {stream for frame_kind, stream in self.frames if frame_kind == kind}

    async def _read_frames(self) -> None:
        try:
            while True:
                head = await self._reader.readexactly(9)
                length = int.from_bytes(head[:3], "big")
                kind, flags = head[3], head[4]
                stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                payload = await self._reader.readexactly(length)
                self.frames.append((kind, stream))
                if kind in (SETTINGS, PING) and not flags & _ACK:
                    self._writer.write(_frame(kind, _ACK, 0, payload if kind == PING else b""))
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.set()

    async def close(self) -> None:
        """Hang up."""
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
