"""Secret hygiene: what repr/str show, and who may read the files secrets live in."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import threading
from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from stageconfig_server.app import StageConfigApp
from stageconfig_server.crypto import KeyCipher
from stageconfig_server.domain import ProviderKind, StageType
from stageconfig_server.providers.base import ProviderCredentials
from stageconfig_server.service import UpdateRequest
from stageconfig_server.settings import LegacySettings
from tests.fakes.provider_server import FakeProviders
from tests.security.conftest import ADMIN_SECRET, STAGES, TOKENS, WORKER_SECRET, seed
from tests.support.servers import TEST_SECRET, server_env, settings_for, start_app

REPO = Path(__file__).resolve().parents[2]
OWNER_ONLY = 0o600


def _shown(obj: object) -> str:
    return repr(obj) + "\n" + str(obj)


def test_settings_never_show_secrets(tmp_path: Path) -> None:
    settings = settings_for(
        server_env(
            tmp_path / "db",
            None,
            ADMIN_SECRET_KEY="current-secret-8d1f",
            ADMIN_SECRET_KEY_PREVIOUS="older-secret-1a2b,oldest-secret-3c4d",
            STAGECONFIG_TOKENS=TOKENS,
        )
    )
    assert settings.admin_secret_key_previous[1].get_secret_value() == "oldest-secret-3c4d"
    shown = _shown(settings) + _shown(settings.model_dump())
    for secret in ("current-secret-8d1f", "older-secret-1a2b", "oldest-secret-3c4d"):
        assert secret not in shown
    assert ADMIN_SECRET not in shown
    assert WORKER_SECRET not in shown
    legacy = LegacySettings.model_validate(
        {"GEMINI_API_KEY": "AIza-legacy-5e6f", "SUNO_API_KEY": "suno-legacy-7a8b"}
    )
    assert "AIza-legacy-5e6f" not in _shown(legacy)
    assert "suno-legacy-7a8b" not in _shown(legacy)
    cipher = _shown(KeyCipher("some-secret-9c0d", ["prev-secret-1e2f"]))
    assert "9c0d" not in cipher
    assert "1e2f" not in cipher


def test_key_holding_objects_never_show_the_key() -> None:
    key = "sk-proj-HYGIENE-0123456789abcdef"
    request = UpdateRequest(
        stage_type=StageType.POEM, provider_kind=ProviderKind.OPENAI, api_key=key, model="gpt-4o"
    )
    credentials = ProviderCredentials(key, {"folder_id": "b1g"})
    for obj in (request, credentials):
        assert key not in _shown(obj)


async def test_server_side_configs_never_show_the_key(secured_app: StageConfigApp) -> None:
    async with grpc.aio.insecure_channel(secured_app.target) as channel:
        await seed(pbg.StageConfigServiceStub(channel))
    service = secured_app.service
    objects: list[object] = [service.list_configs()]
    objects += [service.get_active(StageType(case_stage)) for case_stage in ("POEM", "VOICE")]
    shown = "".join(_shown(o) for o in objects)
    assert "POEM" in shown  # the objects are really there
    for case in STAGES:
        assert case.key not in shown


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_database_files_are_owner_only(tmp_path: Path, fake_providers: FakeProviders) -> None:
    db_path = tmp_path / "fresh" / "stageconfig.db"
    app = await start_app(db_path, fake_providers, STAGECONFIG_TOKENS=TOKENS)
    try:
        async with grpc.aio.insecure_channel(app.target) as channel:
            await seed(pbg.StageConfigServiceStub(channel))
        files = sorted(db_path.parent.glob(db_path.name + "*"))
        assert {p.name for p in files} >= {"stageconfig.db", "stageconfig.db-wal"}
        assert {p.name: _mode(p) for p in files} == {p.name: OWNER_ONLY for p in files}
    finally:
        await app.stop(grace=1)


@pytest.fixture
def readable_db(db_path: Path) -> Path:
    """An existing database file anyone may read (as an older install left it)."""
    db_path.touch()
    db_path.chmod(0o644)
    return db_path


async def test_an_existing_readable_database_is_tightened(
    readable_db: Path, fake_providers: FakeProviders
) -> None:
    db_path = readable_db
    app = await start_app(db_path, fake_providers)
    await app.stop(grace=1)
    assert _mode(db_path) == OWNER_ONLY


def _lock_stamp() -> str:
    # What scripts/_env.sh compares with .venv/.lock-sha to decide whether to re-sync.
    result = subprocess.run(
        [
            "bash",
            "-c",
            "sha256sum requirements.lock pyproject.toml clients/python/pyproject.toml"
            " | sha256sum | cut -c1-16",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_scripts_serve_creates_an_owner_only_dev_secret(
    tmp_path: Path, fake_providers: FakeProviders
) -> None:
    stamp = REPO / ".venv" / ".lock-sha"
    if not stamp.exists() or stamp.read_text().strip() != _lock_stamp():
        pytest.skip(".venv is not in sync with requirements.lock; scripts/serve would re-sync it")
    # A copy of the checkout's scripts in tmp_path, sharing the real .venv: scripts/serve
    # works in its own root, so ./data is created here, not in the shared checkout.
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    for name in ("serve", "_env.sh"):
        (root / "scripts" / name).write_bytes((REPO / "scripts" / name).read_bytes())
    (root / "clients" / "python").mkdir(parents=True)
    for name in ("requirements.lock", "pyproject.toml", "clients/python/pyproject.toml"):
        (root / name).write_bytes((REPO / name).read_bytes())
    (root / ".venv").symlink_to(REPO / ".venv")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STAGECONFIG_", "ADMIN_SECRET")) and k != "VIRTUAL_ENV"
    }
    env.update(fake_providers.env())
    env["STAGECONFIG_ADDRESS"] = "127.0.0.1:0"
    proc = subprocess.Popen(
        ["bash", str(root / "scripts" / "serve")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    listening = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if "stageconfig listening on" in line:
                listening.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert listening.wait(60), "".join(output)
    finally:
        proc.send_signal(signal.SIGTERM)  # serve execs the server: this is the server
        assert proc.wait(30) == 0
    secret_file = root / "data" / "dev-admin-secret"
    assert _mode(secret_file) == OWNER_ONLY
    assert _mode(root / "data") == 0o700
    assert _mode(root / "data" / "stageconfig.db") == OWNER_ONLY
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32
    log = "".join(output)
    assert "WARNING: ADMIN_SECRET_KEY is not set" in log
    assert secret not in log
    assert TEST_SECRET not in log
