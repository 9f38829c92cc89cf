"""SQLite crash safety: SIGKILL while two writers commit never corrupts the file and never
loses a write that was acknowledged (WAL + synchronous=FULL + BEGIN IMMEDIATE)."""

from __future__ import annotations

import random
import secrets
import socket
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.faults.conftest import voice_update
from tests.support.servers import ServerProcess, server_env

KILLS = 4
WRITERS = 2
MODELS = ["alena", "jane", "filipp", "ermil", "omazh", "zahar"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Writes:
    """What the writers were told: comment → acknowledged revision."""

    acknowledged: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)
    stop: threading.Event = field(default_factory=threading.Event)


def _writer(target: str, number: int, writes: Writes) -> None:
    rng = random.Random(number)
    with grpc.insecure_channel(target) as channel:
        stub = pbg.StageConfigServiceStub(channel)
        sequence = 0
        while not writes.stop.is_set():
            sequence += 1
            comment = f"writer-{number}-{sequence}"
            # Every third write stores a new ~3 KB key: a transaction spanning several
            # pages (api_keys row, config row, log row, counter) for the kill to tear.
            key = f"AQVN-{secrets.token_hex(1500)}" if sequence % 3 == 0 else "AQVN-crash-key-01"
            request = voice_update(rng.choice(MODELS), key)
            request.comment = comment
            with writes.changed:
                writes.in_flight += 1
            try:
                answer = stub.UpdateConfig(request, timeout=10, wait_for_ready=True)
            except grpc.RpcError:
                continue  # killed around it: outcome unknown, either way is fine
            finally:
                with writes.changed:
                    writes.in_flight -= 1
            with writes.changed:
                # An update identical to the stored config writes nothing (written is
                # false): only written ones must be in the file.
                if answer.written:
                    writes.acknowledged[comment] = answer.config.revision
                writes.changed.notify_all()


def _check_file(db_path: Path, acknowledged: dict[str, int]) -> None:
    conn = sqlite3.connect(db_path)
    try:
        assert [row[0] for row in conn.execute("PRAGMA integrity_check")] == ["ok"]
        log = dict(conn.execute("SELECT comment, revision FROM revision_log").fetchall())
        lost = {c: r for c, r in acknowledged.items() if log.get(c) != r}
        assert lost == {}, f"acknowledged writes missing after SIGKILL: {lost}"
        revisions = sorted(log.values())
        assert revisions == list(range(1, len(revisions) + 1)), "a gap in the revision log"
        (head,) = conn.execute("SELECT head FROM revision_counter").fetchone()
        assert head == revisions[-1]
        # The config row is the newest logged state, and its key row exists.
        row = conn.execute(
            "SELECT c.revision, k.id FROM provider_configs c "
            "JOIN api_keys k ON k.id = c.api_key_id WHERE c.stage_type = 'VOICE'"
        ).fetchone()
        assert row is not None
        assert row[0] == head
    finally:
        conn.close()


def test_sigkill_during_writes_keeps_the_file_intact_and_every_acknowledged_write(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "stageconfig.db"
    server = ServerProcess(
        server_env(db_path, None, STAGECONFIG_ADDRESS=f"127.0.0.1:{_free_port()}")
    ).start()
    writes = Writes()
    threads = [
        threading.Thread(target=_writer, args=(server.target, n, writes), daemon=True)
        for n in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    rng = random.Random()
    torn = 0
    try:
        for _ in range(KILLS):
            with writes.changed:
                goal = len(writes.acknowledged) + rng.randint(5, 15)
                assert writes.changed.wait_for(lambda g=goal: len(writes.acknowledged) >= g, 30)
            writes.stop.wait(rng.uniform(0, 0.02))  # land inside a commit, mostly
            with writes.changed:
                torn += writes.in_flight > 0
            server.kill()
            with writes.changed:
                acknowledged = dict(writes.acknowledged)
            _check_file(db_path, acknowledged)
            server.start()
    finally:
        writes.stop.set()
        for thread in threads:
            thread.join(15)
        server.stop()
    _check_file(db_path, writes.acknowledged)
    assert torn >= 1, "no kill hit a write in flight"
    print(f"\n{KILLS} SIGKILLs ({torn} with writes in flight), {len(writes.acknowledged)} acked")
