"""Clients that stop reading, hold too many streams or refuse in a loop (issue 19, items
7 and 8), against real servers on port 0.

- A reader that stops is dropped after the send timeout, counted in the metrics, with
  no GRPC_CALL_ERROR_TOO_MANY_OPERATIONS (nor any ERROR) in the log; a gRPC client that
  resumes reading gets UNAVAILABLE at once; a connection that never reads again is
  ended by the server at the connection age (status trailers or RST on every stream).
- Streams beyond the per-peer / per-token limits get RESOURCE_EXHAUSTED.
- Refusals are logged at most once per interval per kind and all counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from prometheus_client import generate_latest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import StageConfigApp
from stageconfig_server.rpc.refusals import RefusalLog
from stageconfig_server.rpc.server import SERVICE_NAME
from tests.fakes.provider_server import FakeProviders
from tests.security.conftest import (
    ADMIN_SECRET,
    TOKENS,
    UNKNOWN_SECRET,
    WORKER_SECRET,
    bearer,
)
from tests.security.raw_http2 import HEADERS, RST_STREAM, GreedyClient
from tests.support.servers import start_app

WATCH = f"/{SERVICE_NAME}/WatchConfig"
# Each connection its own: grpc would otherwise share one between channels of a process.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1), ("grpc.http2.bdp_probe", 0)]


async def until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Wait (polling) until ``condition`` holds; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.05)


def metric(app: StageConfigApp, line_start: str) -> float:
    """The value of the exposed sample whose line starts with ``line_start``."""
    for line in generate_latest(app.metrics.registry).decode().splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {line_start}")


def no_core_errors(caplog: pytest.LogCaptureFixture) -> None:
    """Neither GRPC_CALL_ERROR_* nor any ERROR record or traceback in the log."""
    assert "TOO_MANY_OPERATIONS" not in caplog.text
    assert "GRPC_CALL_ERROR" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def set_voice(stub: pbg.StageConfigServiceStub, n: int, metadata: object = ()) -> None:
    """A VOICE change carrying a 4 KB key (so a stalled reader's window fills fast)."""
    await stub.UpdateConfig(
        pb.UpdateConfigRequest(
            stage_type=pb.STAGE_TYPE_VOICE,
            provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
            api_key=f"{n:04d}" * 1000,
            model="alena" if n % 2 else "zahar",
        ),
        metadata=metadata,  # type: ignore[arg-type]
    )


async def test_a_connection_that_never_reads_is_dropped_counted_and_closed(
    db_path: Path, fake_providers: FakeProviders, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = await start_app(
        db_path,
        fake_providers,
        STAGECONFIG_WATCH_SEND_TIMEOUT_SECONDS="0.5",
        STAGECONFIG_MAX_CONNECTION_AGE_SECONDS="3",
        STAGECONFIG_MAX_CONNECTION_AGE_GRACE_SECONDS="1",
        STAGECONFIG_MAX_STREAMS_PER_PEER="0",
    )
    greedy: GreedyClient | None = None
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            await set_voice(pbg.StageConfigServiceStub(channel), 1)
        # A window of 0: not even the first message (the snapshot) can be sent.
        greedy = await GreedyClient.connect("127.0.0.1", app.port, window=0)
        request = pb.WatchConfigRequest(client_id="greedy").SerializeToString()
        streams = {greedy.call(WATCH, app.target, request) for _ in range(100)}
        await until(lambda: app.broadcaster.watchers_dropped == 100, 20, "100 drops")
        assert app.broadcaster.watchers == []
        assert metric(app, "stageconfig_watchers_dropped_total") == 100
        # Counted as this server's refusals (the log line's rate limit is this server's
        # too: drops in another server of the same process do not suppress it).
        assert metric(app, 'stageconfig_refusals_total{kind="watcher_dropped"}') == 100
        # The connection age ends what the client never reads: every stream gets its
        # status trailers or a reset, then the connection closes.
        await asyncio.wait_for(greedy.closed.wait(), 15)
        assert streams <= greedy.received(HEADERS) | greedy.received(RST_STREAM)
        no_core_errors(caplog)
        drops = [r for r in caplog.records if "dropping watcher" in r.getMessage()]
        assert 1 <= len(drops) <= 3  # rate-limited: not one line per drop
    finally:
        if greedy is not None:
            await greedy.close()
        await app.stop(grace=1)


async def test_readers_that_stop_get_unavailable_as_soon_as_they_read_again(
    db_path: Path, fake_providers: FakeProviders, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = await start_app(db_path, fake_providers, STAGECONFIG_WATCH_SEND_TIMEOUT_SECONDS="0.5")
    channels = [grpc.aio.insecure_channel(app.target, options=OWN_CONNECTION) for _ in range(8)]
    try:
        async with grpc.aio.insecure_channel(app.target) as admin_channel:
            stub = pbg.StageConfigServiceStub(admin_channel)
            calls = [
                pbg.StageConfigServiceStub(c).WatchConfig(pb.WatchConfigRequest(client_id=f"s{i}"))
                for i, c in enumerate(channels)
            ]
            for call in calls:
                await asyncio.wait_for(call.read(), 5)  # the snapshot; then they stop reading
            updates = 0
            while app.broadcaster.watchers and updates < 400:
                updates += 1
                await set_voice(stub, updates)
            await until(lambda: app.broadcaster.watchers_dropped == 8, 10, "8 drops")

            async def status_after_resuming(
                call: grpc.aio.UnaryStreamCall[pb.WatchConfigRequest, pb.WatchConfigResponse],
            ) -> grpc.StatusCode:
                try:
                    while await call.read() is not grpc.aio.EOF:
                        pass
                except grpc.aio.AioRpcError as error:
                    return error.code()
                return grpc.StatusCode.OK

            started = time.monotonic()
            codes = await asyncio.wait_for(
                asyncio.gather(*(status_after_resuming(c) for c in calls)), 10
            )
            assert codes == [grpc.StatusCode.UNAVAILABLE] * 8
            assert time.monotonic() - started < 3  # what was sent, then the status at once
        no_core_errors(caplog)
    finally:
        for channel in channels:
            await channel.close()
        await app.stop(grace=1)


async def _watch_opens(
    channel: grpc.aio.Channel, metadata: object = ()
) -> tuple[
    grpc.StatusCode, grpc.aio.UnaryStreamCall[pb.WatchConfigRequest, pb.WatchConfigResponse]
]:
    """Open a watch; OK once its first message arrived, else the refusal's code."""
    call = pbg.StageConfigServiceStub(channel).WatchConfig(
        pb.WatchConfigRequest(client_id="limited"),
        metadata=metadata,  # type: ignore[arg-type]
    )
    try:
        await asyncio.wait_for(call.read(), 5)
    except grpc.aio.AioRpcError as error:
        return error.code(), call
    return grpc.StatusCode.OK, call


async def test_streams_beyond_the_per_peer_limit_get_resource_exhausted(
    db_path: Path, fake_providers: FakeProviders
) -> None:
    app = await start_app(db_path, fake_providers, STAGECONFIG_MAX_STREAMS_PER_PEER="3")
    first = grpc.aio.insecure_channel(app.target, options=OWN_CONNECTION)
    second = grpc.aio.insecure_channel(app.target, options=OWN_CONNECTION)
    try:
        opened = [await _watch_opens(first) for _ in range(3)]
        assert [code for code, _ in opened] == [grpc.StatusCode.OK] * 3
        code, refused = await _watch_opens(first)
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "STAGECONFIG_MAX_STREAMS_PER_PEER" in (await refused.details() or "")
        # Another connection has its own budget.
        code, other = await _watch_opens(second)
        assert code is grpc.StatusCode.OK
        # A stream that ends gives its place back.
        opened[0][1].cancel()
        await until(lambda: len(app.broadcaster.watchers) == 3, 5, "the cancelled stream gone")
        deadline = time.monotonic() + 5
        while (await _watch_opens(first))[0] is not grpc.StatusCode.OK:
            assert time.monotonic() < deadline, "the freed place was never given back"
        assert metric(app, 'stageconfig_refusals_total{kind="stream_limit"}') >= 1
        other.cancel()
    finally:
        await first.close()
        await second.close()
        await app.stop(grace=1)


async def test_a_greedy_connection_holds_no_more_than_the_default_limit(
    db_path: Path, fake_providers: FakeProviders
) -> None:
    app = await start_app(db_path, fake_providers)  # the default: 64 per peer
    greedy = await GreedyClient.connect("127.0.0.1", app.port, window=1 << 20)
    try:
        request = pb.WatchConfigRequest(client_id="greedy").SerializeToString()
        for _ in range(100):
            greedy.call(WATCH, app.target, request)
        key = 'stageconfig_refusals_total{kind="stream_limit"}'
        await until(lambda: metric(app, key) == 36, 15, "36 refusals")
        assert len(app.broadcaster.watchers) == 64
    finally:
        await greedy.close()
        await app.stop(grace=1)


async def test_streams_beyond_the_per_token_limit_get_resource_exhausted(
    db_path: Path, fake_providers: FakeProviders
) -> None:
    app = await start_app(
        db_path,
        fake_providers,
        STAGECONFIG_TOKENS=TOKENS,
        STAGECONFIG_MAX_STREAMS_PER_TOKEN="2",
    )
    channels = [grpc.aio.insecure_channel(app.target, options=OWN_CONNECTION) for _ in range(4)]
    try:
        worker = bearer(WORKER_SECRET)
        assert (await _watch_opens(channels[0], worker))[0] is grpc.StatusCode.OK
        assert (await _watch_opens(channels[1], worker))[0] is grpc.StatusCode.OK
        code, refused = await _watch_opens(channels[2], worker)
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "STAGECONFIG_MAX_STREAMS_PER_TOKEN" in (await refused.details() or "")
        # Another token has its own budget.
        assert (await _watch_opens(channels[3], bearer(ADMIN_SECRET)))[0] is grpc.StatusCode.OK
    finally:
        for channel in channels:
            await channel.close()
        await app.stop(grace=1)


async def test_refusals_are_logged_once_per_interval_and_all_counted(
    db_path: Path, fake_providers: FakeProviders, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = await start_app(db_path, fake_providers, STAGECONFIG_TOKENS=TOKENS)
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            for _ in range(50):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.ListConfigs(pb.ListConfigsRequest(), metadata=bearer(UNKNOWN_SECRET))
                assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        lines = [r for r in caplog.records if r.name == "stageconfig_server.rpc.refusals"]
        assert len(lines) == 1
        assert lines[0].levelno == logging.WARNING
        assert metric(app, 'stageconfig_refusals_total{kind="unauthenticated"}') == 50
        assert UNKNOWN_SECRET not in caplog.text
    finally:
        await app.stop(grace=1)


def test_the_refusal_log_says_how_many_lines_it_left_out() -> None:
    now = [0.0]
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("tests.refusals")
    logger.addHandler(Collect())
    logger.propagate = False
    refusals = RefusalLog(logger, interval_seconds=10, clock=lambda: now[0])
    for second in range(25):
        now[0] = float(second)
        refusals.refused("unauthenticated", logging.WARNING, "no token from %s", "peer")
        refusals.refused("permission_denied", logging.WARNING, "wrong role")
    assert records[:2] == ["no token from peer", "wrong role"]
    assert records[2] == ("no token from peer (and 9 more like it in the last 10 s, not logged)")
    assert len(records) == 6  # t = 0, 10, 20 for each kind
    assert refusals.counts()["unauthenticated"] == 25
    with pytest.raises(ValueError, match="unknown refusal kind"):
        refusals.refused("made-up", logging.INFO, "x")
