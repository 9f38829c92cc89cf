"""Database trouble: a full disk, a size limit, PostgreSQL stopped, crashed, or read-only.

Every case checks what an operator and a worker would: writes answer UNAVAILABLE with a
message naming the database and the cause; health turns NOT_SERVING; reads (from the
server's memory) and open watch streams keep working; the server stays up; and once
the database is back, health returns to SERVING by itself — no request needed — and the
next write succeeds at the very next revision and reaches the watcher.

SQLite as root: chmod cannot make a file read-only for root, and a running server's open
descriptors keep write access even to a ``chattr +i`` file or a filesystem remounted
read-only (the remount is refused while files are open for writing). So "unwritable"
is simulated the two ways that do bite a running server: a tiny tmpfs filled to the
brim (a real ENOSPC) and SQLite's own size limit (``PRAGMA max_page_count``). The
read-only case runs on PostgreSQL (``default_transaction_read_only``), where it is real.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import event

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.faults.conftest import (
    NOT_SERVING,
    SERVING,
    health_statuses,
    voice_update,
    wait_for_health,
    wait_until,
)
from tests.faults.pg_cluster import PrivatePostgres
from tests.support.servers import ServerProcess, server_env, start_app

BIG_KEY = "AQVN-" + "k" * 3000
"""A key whose write needs fresh pages (a short one could fit in a page's free space)."""


async def _next(call: Any, kind: str) -> Any:
    while True:
        message = await call.read()
        if message.WhichOneof("event") == kind:
            return getattr(message, kind)


async def _outage_and_recovery(
    target: str,
    inject: Callable[[], Awaitable[None]],
    repair: Callable[[], Awaitable[None]],
    *,
    cause: str,
    alive: Callable[[], bool],
) -> float:
    """The common script; returns how long health took to turn SERVING after repair."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pbg.StageConfigServiceStub(channel)
        before = (await stub.UpdateConfig(voice_update("alena"), timeout=10)).config
        watch = stub.WatchConfig(pb.WatchConfigRequest(client_id="fault-watcher"))
        snapshot = await asyncio.wait_for(_next(watch, "snapshot"), 5)
        assert snapshot.revision == before.revision
        await wait_for_health(channel, SERVING, 5)

        await inject()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.UpdateConfig(voice_update("jane", BIG_KEY), timeout=20)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        details = refused.value.details() or ""
        assert details.startswith("the database is unavailable: "), details
        assert cause in details, details
        await wait_for_health(channel, NOT_SERVING, 2)

        # Reads are served from memory; the open stream keeps its heartbeats.
        active = await stub.GetActiveConfig(
            pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_VOICE), timeout=5
        )
        assert (active.config.revision, active.config.model) == (before.revision, "alena")
        listed = await stub.ListConfigs(pb.ListConfigsRequest(), timeout=5)
        assert listed.head_revision == before.revision
        heartbeat = await asyncio.wait_for(_next(watch, "heartbeat"), 5)
        assert heartbeat.head_revision == before.revision
        # A heartbeat period later (several write probes): still down, still NOT_SERVING.
        assert alive()
        assert await health_statuses(channel) == (NOT_SERVING, NOT_SERVING)

        await repair()
        recovered_in = await wait_for_health(channel, SERVING, 10)
        after = await stub.UpdateConfig(voice_update("jane", BIG_KEY), timeout=20)
        assert after.config.revision == before.revision + 1  # the failure took no revision
        change = await asyncio.wait_for(_next(watch, "change"), 5)
        assert (change.revision, change.config.model) == (after.config.revision, "jane")
        watch.cancel()
    assert alive()
    return recovered_in


async def test_a_full_disk_answers_unavailable_and_recovers_when_space_returns(
    tiny_filesystem: Path,
) -> None:
    server = ServerProcess(server_env(tiny_filesystem / "stageconfig.db", None))
    await asyncio.to_thread(server.start)
    filler = tiny_filesystem / "filler"

    async def fill_the_disk() -> None:
        # Unbuffered: a buffered file's close would flush the unwritten rest and raise
        # ENOSPC outside the suppress.
        with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
            while True:  # until ENOSPC, then byte-sized chunks for the last blocks
                out.write(b"\0" * 65536)
        with filler.open("ab", buffering=0) as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 512)

    async def free_space() -> None:
        filler.unlink()

    try:
        took = await _outage_and_recovery(
            server.target,
            fill_the_disk,
            free_space,
            cause="database or disk is full",
            alive=lambda: server.proc is not None and server.proc.poll() is None,
        )
        print(f"\nhealth SERVING {took * 1000:.0f} ms after space returned")
    finally:
        await asyncio.to_thread(server.stop)
    assert "Traceback" not in server.log


async def test_a_size_limited_sqlite_file_answers_unavailable_and_recovers(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "stageconfig.db"
    app = await start_app(db_path, None)
    engine = app.engine.sync_engine

    def size_limit(pages: int) -> Callable[[Any, Any], None]:
        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA max_page_count = {pages}")
            cursor.close()

        return on_connect

    limits: list[Callable[[Any, Any], None]] = []

    async def limit_the_size() -> None:
        # An operator's quota: the file may not grow past its current size, on every
        # connection the server opens from now on.
        with contextlib.closing(sqlite3.connect(db_path)) as conn:
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
        limits.append(size_limit(pages))
        event.listen(engine, "connect", limits[-1])
        await app.engine.dispose()

    async def lift_the_limit() -> None:
        event.remove(engine, "connect", limits.pop())
        await app.engine.dispose()

    try:
        await _outage_and_recovery(
            app.target,
            limit_the_size,
            lift_the_limit,
            cause="database or disk is full",
            alive=lambda: True,
        )
    finally:
        await app.stop(grace=1)


def _postgres_server(url: str, tmp_path: Path) -> ServerProcess:
    return ServerProcess(
        server_env(tmp_path / "unused.db", None, STAGECONFIG_DATABASE_URL=url)
    ).start()


async def test_postgres_down_answers_unavailable_and_recovers_by_itself(
    private_postgres: PrivatePostgres, private_pg_url: str, tmp_path: Path
) -> None:
    server = await asyncio.to_thread(_postgres_server, private_pg_url, tmp_path)

    async def stop_postgres() -> None:
        await asyncio.to_thread(private_postgres.stop, "fast")

    async def start_postgres() -> None:
        await asyncio.to_thread(private_postgres.start)

    try:
        took = await _outage_and_recovery(
            server.target,
            stop_postgres,
            start_postgres,
            cause="",
            alive=lambda: server.proc is not None and server.proc.poll() is None,
        )
        print(f"\nhealth SERVING {took * 1000:.0f} ms after PostgreSQL started")
    finally:
        with contextlib.suppress(RuntimeError):  # already up again
            await asyncio.to_thread(private_postgres.start)
        await asyncio.to_thread(server.stop)
    assert "Traceback" not in server.log, server.log


async def test_postgres_read_only_answers_unavailable_and_recovers(
    private_postgres: PrivatePostgres, private_pg_url: str, tmp_path: Path
) -> None:
    name = private_pg_url.rsplit("/", 1)[1]
    server = await asyncio.to_thread(_postgres_server, private_pg_url, tmp_path)
    # Sessions take the database's default when they start: drop them so the server's
    # pool reconnects into the new setting (as after a failover to a read-only node).
    drop_sessions = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )

    async def read_only() -> None:
        await private_postgres.execute(
            f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'
        )
        await private_postgres.execute(drop_sessions)

    async def read_write() -> None:
        await private_postgres.execute(
            f'ALTER DATABASE "{name}" RESET default_transaction_read_only'
        )
        await private_postgres.execute(drop_sessions)

    try:
        await _outage_and_recovery(
            server.target,
            read_only,
            read_write,
            cause="read-only transaction",
            alive=lambda: server.proc is not None and server.proc.poll() is None,
        )
    finally:
        await asyncio.to_thread(server.stop)
    assert "Traceback" not in server.log, server.log


async def test_postgres_crash_restart_during_writes_loses_no_acknowledged_write(
    private_postgres: PrivatePostgres, private_pg_url: str, tmp_path: Path
) -> None:
    server = await asyncio.to_thread(_postgres_server, private_pg_url, tmp_path)
    acknowledged: dict[str, int] = {}
    refused: list[str] = []
    stop = asyncio.Event()

    async def write(stub: pbg.StageConfigServiceStub) -> None:
        number = 0
        while not stop.is_set():
            number += 1
            request = voice_update(("alena", "jane", "zahar")[number % 3])
            request.comment = f"crash-{number}"
            try:
                answer = await stub.UpdateConfig(request, timeout=10)
            except grpc.aio.AioRpcError as exc:
                refused.append(f"{exc.code().name}: {exc.details()}")
                await asyncio.sleep(0.02)  # a retry pause (not a wait for a condition)
                continue
            if answer.written:  # an identical update writes nothing
                acknowledged[request.comment] = answer.config.revision

    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            writer = asyncio.create_task(write(stub))
            await wait_until(lambda: len(acknowledged) >= 10, 10, "writes before the crash")
            crashed_at = time.monotonic()
            # immediate = no shutdown checkpoint: recovery replays PostgreSQL's WAL.
            await asyncio.to_thread(private_postgres.restart, "immediate")
            count = len(acknowledged)
            await wait_until(lambda: len(acknowledged) >= count + 10, 15, "writes after it")
            stop.set()
            await writer
            print(
                f"\nPostgreSQL crashed and restarted; writes resumed within "
                f"{time.monotonic() - crashed_at:.1f} s; {len(refused)} refused meanwhile"
            )
            assert refused, "no write met the crash"
            assert all(r.startswith("UNAVAILABLE: the database is unavailable") for r in refused)
            history = await stub.GetConfigHistory(
                pb.GetConfigHistoryRequest(page_size=100), timeout=10
            )
            stored = {e.comment: e.revision for e in history.entries}
            assert {c: stored.get(c) for c in acknowledged} == acknowledged
            await wait_for_health(channel, SERVING, 10)
        assert server.proc is not None
        assert server.proc.poll() is None
    finally:
        stop.set()
        await asyncio.to_thread(server.stop)
    assert "Traceback" not in server.log, server.log
