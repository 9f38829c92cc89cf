"""Key rotation with no downtime: a real server process keeps answering readers, a
watcher and a writer while ``stageconfig-server rotate-keys`` re-encrypts everything;
afterwards the old secret can be dropped, and a start with only the old one is refused."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.crypto import KeyCipher
from stageconfig_server.domain import ProviderKind
from stageconfig_server.errors import SecretMismatch
from tests.fakes.provider_server import FakeProviders
from tests.security.conftest import (
    ADMIN_SECRET,
    STAGES,
    TOKEN_SECRETS,
    TOKENS,
    WORKER_SECRET,
    bearer,
    seed,
)
from tests.support.servers import ServerProcess, server_env, start_app

OLD_SECRET = "old-admin-secret-5b1e0c7d9a2f4e68"
NEW_SECRET = "new-admin-secret-e3a9d1c57b0f4826"


async def _seed_with_old_secret(db_path: Path, fake: FakeProviders) -> None:
    app = await start_app(db_path, fake, ADMIN_SECRET_KEY=OLD_SECRET, STAGECONFIG_TOKENS=TOKENS)
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            await seed(stub)
            # A second POEM key, so api_keys holds a key no config points at any more.
            await stub.UpdateConfig(
                pb.UpdateConfigRequest(
                    stage_type=pb.STAGE_TYPE_POEM,
                    provider_kind=pb.PROVIDER_KIND_OPENAI,
                    api_key="sk-LEAKROTATE-openai-0001",
                    model="gpt-4o",
                ),
                metadata=bearer(ADMIN_SECRET),
            )
            await stub.UpdateConfig(STAGES[0].request(), metadata=bearer(ADMIN_SECRET))
    finally:
        await app.stop(grace=1)


def _ciphertexts(db_path: Path) -> list[str]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT api_key_encrypted FROM provider_configs").fetchall()
        rows += conn.execute("SELECT api_key_encrypted FROM api_keys").fetchall()
        rows += conn.execute(
            "SELECT value FROM service_state WHERE name = 'encryption_canary'"
        ).fetchall()
    return [value for (value,) in rows if value]


def _rotate(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stageconfig_server", "rotate-keys"],
        env=ServerProcess(env).env,  # the test environment minus stray STAGECONFIG_* vars
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Traffic:
    """Client threads calling a server until stopped; counts calls, keeps every error."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.errors: list[str] = []
        self.calls = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _record(self, error: str | None = None) -> None:
        with self._changed:
            if error is None:
                self.calls += 1
            else:
                self.errors.append(error)
            self._changed.notify_all()

    def wait_for_calls(self, count: int, timeout: float = 30) -> None:
        """Block until ``count`` successful calls in total (or fail the test)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.calls >= count or self.errors, timeout):
                raise AssertionError(f"only {self.calls} calls in {timeout} s")

    def start(self, *loops: Callable[[pbg.StageConfigServiceStub], None]) -> None:
        for loop in loops:
            thread = threading.Thread(target=self._run, args=(loop,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, loop: Callable[[pbg.StageConfigServiceStub], None]) -> None:
        with grpc.insecure_channel(self.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            while not self._stop.is_set():
                try:
                    loop(stub)
                    self._record()
                except grpc.RpcError as error:
                    self._record(f"{loop.__name__}: {error.code()} {error.details()}")
                except AssertionError as error:
                    self._record(f"{loop.__name__}: {error}")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


@contextmanager
def traffic(target: str, expected_keys: dict[int, str]) -> Iterator[Traffic]:
    """Readers (worker + admin), a watcher and a writer, all checking what they get."""
    poem = pb.STAGE_TYPE_POEM
    writes = iter(range(1_000_000))

    def worker_reads(stub: pbg.StageConfigServiceStub) -> None:
        for stage, key in expected_keys.items():
            reply = stub.GetActiveConfig(
                pb.GetActiveConfigRequest(stage_type=stage),
                metadata=bearer(WORKER_SECRET),
                timeout=10,
            )
            if stage != poem:  # the writer changes POEM's key
                assert reply.config.api_key == key, f"stage {stage} answered another key"

    def admin_reads(stub: pbg.StageConfigServiceStub) -> None:
        reply = stub.ListConfigs(pb.ListConfigsRequest(), metadata=bearer(ADMIN_SECRET), timeout=10)
        assert len(reply.stages) == 4

    def writes_new_keys(stub: pbg.StageConfigServiceStub) -> None:
        stub.UpdateConfig(
            pb.UpdateConfigRequest(
                stage_type=poem,
                provider_kind=pb.PROVIDER_KIND_GEMINI,
                api_key=f"AIzaLEAKROTATE-written-{next(writes):06d}",
                model="gemini-2.5-flash",
            ),
            metadata=bearer(ADMIN_SECRET),
            timeout=10,
        )

    def watches(stub: pbg.StageConfigServiceStub) -> None:
        call = stub.WatchConfig(
            pb.WatchConfigRequest(stage_types=list(expected_keys)), metadata=bearer(WORKER_SECRET)
        )
        try:
            first = next(call)
            assert first.WhichOneof("event") == "snapshot"
            for _ in range(3):  # changes from the writer, heartbeats every second
                next(call)
        finally:
            call.cancel()

    running = Traffic(target)
    running.start(worker_reads, admin_reads, writes_new_keys, watches)
    try:
        yield running
    finally:
        running.stop()


def test_rotation_while_serving_then_the_old_secret_can_be_dropped(
    db_path: Path, fake_providers: FakeProviders, tmp_path: Path
) -> None:
    asyncio.run(_seed_with_old_secret(db_path, fake_providers))
    assert not any(KeyCipher(NEW_SECRET).is_current(c) for c in _ciphertexts(db_path))
    rotating_env = server_env(
        db_path,
        fake_providers,
        ADMIN_SECRET_KEY=NEW_SECRET,
        ADMIN_SECRET_KEY_PREVIOUS=OLD_SECRET,
        STAGECONFIG_TOKENS=TOKENS,
        STAGECONFIG_LOG_LEVEL="DEBUG",
    )
    server = ServerProcess(rotating_env, cwd=tmp_path).start()
    try:
        expected = {case.stage: case.key for case in STAGES}
        with traffic(server.target, expected) as running:
            running.wait_for_calls(20)
            rotated = _rotate(rotating_env, tmp_path)
            assert rotated.returncode == 0, rotated.stdout + rotated.stderr
            assert "re-encrypted" in rotated.stdout
            after_rotation = running.calls
            running.wait_for_calls(after_rotation + 20)
        assert running.errors == []
        assert server.stop() == 0
    finally:
        server.stop()
    new_only = KeyCipher(NEW_SECRET)
    ciphertexts = _ciphertexts(db_path)
    assert ciphertexts
    assert all(new_only.is_current(c) for c in ciphertexts)
    # DEBUG logging, every kind of call, a rotation: no key, no token, no secret.
    output = server.log + rotated.stdout + rotated.stderr
    for secret in (*(case.key for case in STAGES), *TOKEN_SECRETS, OLD_SECRET, NEW_SECRET):
        assert secret not in output
    assert "LEAKROTATE" not in output  # the writer's keys

    # Restart with only the new secret: every stored key (current and historic) decrypts;
    # the old secret alone no longer opens this database.
    asyncio.run(_restart_with_new_secret_only(db_path, fake_providers))


async def _restart_with_new_secret_only(db_path: Path, fake: FakeProviders) -> None:
    app = await start_app(db_path, fake, ADMIN_SECRET_KEY=NEW_SECRET, STAGECONFIG_TOKENS=TOKENS)
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            stub = pbg.StageConfigServiceStub(channel)
            for case in STAGES[1:]:
                reply = await stub.GetActiveConfig(
                    pb.GetActiveConfigRequest(stage_type=case.stage),
                    metadata=bearer(WORKER_SECRET),
                    timeout=10,
                )
                assert reply.config.api_key == case.key
            # Revision 1 stored POEM's first key, written under the old secret.
            await stub.RollbackConfig(
                pb.RollbackConfigRequest(stage_type=pb.STAGE_TYPE_POEM, to_revision=1),
                metadata=bearer(ADMIN_SECRET),
                timeout=10,
            )
            poem = await stub.GetActiveConfig(
                pb.GetActiveConfigRequest(stage_type=pb.STAGE_TYPE_POEM),
                metadata=bearer(WORKER_SECRET),
                timeout=10,
            )
            assert poem.config.api_key == STAGES[0].key
    finally:
        await app.stop(grace=1)
    with pytest.raises(SecretMismatch, match="ADMIN_SECRET_KEY does not match"):
        await start_app(db_path, fake, ADMIN_SECRET_KEY=OLD_SECRET)


async def test_update_in_flight_during_rotation_does_not_write_an_old_ciphertext(
    db_path: Path, fake_providers: FakeProviders, tmp_path: Path
) -> None:
    await _seed_with_old_secret(db_path, fake_providers)
    secrets = {"ADMIN_SECRET_KEY": NEW_SECRET, "ADMIN_SECRET_KEY_PREVIOUS": OLD_SECRET}
    app = await start_app(
        db_path,
        fake_providers,
        STAGECONFIG_TOKENS=TOKENS,
        STAGECONFIG_PROVIDER_TIMEOUT_SECONDS="20",
        **secrets,
    )
    try:
        fake_providers.set_failure(ProviderKind.GEMINI, "hang")
        fake_providers.clear_requests()
        async with grpc.aio.insecure_channel(app.target) as channel:
            update = asyncio.ensure_future(
                pbg.StageConfigServiceStub(channel).UpdateConfig(
                    pb.UpdateConfigRequest(
                        stage_type=pb.STAGE_TYPE_POEM,
                        provider_kind=pb.PROVIDER_KIND_GEMINI,
                        model="gemini-2.5-flash",
                    ),
                    metadata=bearer(ADMIN_SECRET),
                    timeout=30,
                )
            )
            # The update has read the stored key and now waits on the provider.
            assert await asyncio.to_thread(fake_providers.wait_for_requests, 1, 10)
            rotation = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "stageconfig_server",
                "rotate-keys",
                env=ServerProcess(server_env(db_path, fake_providers, **secrets)).env,
                cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await asyncio.wait_for(rotation.communicate(), timeout=60)
            assert rotation.returncode == 0, output.decode()
            fake_providers.set_failure(ProviderKind.GEMINI, None)  # the provider answers
            await update
    finally:
        await app.stop(grace=1)
    new_only = KeyCipher(NEW_SECRET)
    assert all(new_only.is_current(c) for c in _ciphertexts(db_path))
