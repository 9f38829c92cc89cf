"""``stageconfig-server import-env``: the plan's data migration from the legacy env."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.fakes.provider_server import FakeProviders
from tests.support.servers import clean_environ, server_env

LEGACY = {
    "GEMINI_API_KEY": "AIza-legacy-gemini-key-0001",
    "GEMINI_MODEL": "gemini-2.5-pro",
    "SPEECHKIT_API_KEY": "AQVN-legacy-speechkit-0002",
    "SPEECHKIT_VOICE": "jane",
    "SUNO_API_KEY": "suno-legacy-key-0003",
}


def import_env(db_path: Path, fake: FakeProviders, *args: str, **extra: str) -> tuple[int, str]:
    env = {**clean_environ(), **server_env(db_path, fake), **LEGACY, **extra}
    proc = subprocess.run(
        [sys.executable, "-m", "stageconfig_server", "import-env", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def stored_rows(db_path: Path) -> list[tuple[str, str, str, int]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(
            "SELECT stage_type, provider_kind, model, revision FROM provider_configs "
            "ORDER BY stage_type"
        ).fetchall()


def test_dry_run_shows_masked_keys_and_writes_nothing(
    db_path: Path, fake_providers: FakeProviders
) -> None:
    code, out = import_env(db_path, fake_providers, "--dry-run")
    assert code == 0, out
    assert "POEM: would import GEMINI gemini-2.5-pro key AIza-…0001" in out
    assert "VOICE: would import SPEECHKIT jane key AQVN-…0002" in out
    assert "SONG: would import SUNO V4_5 key suno-…0003" in out
    assert "CLIP: skipped: no legacy setting" in out
    for key in (
        "AIza-legacy-gemini-key-0001",
        "AQVN-legacy-speechkit-0002",
        "suno-legacy-key-0003",
    ):
        assert key not in out
    assert stored_rows(db_path) == []


def test_import_stores_every_legacy_stage_once(
    db_path: Path, fake_providers: FakeProviders
) -> None:
    code, out = import_env(db_path, fake_providers)
    assert code == 0, out
    assert stored_rows(db_path) == [
        ("POEM", "GEMINI", "gemini-2.5-pro", 1),
        ("SONG", "SUNO", "V4_5", 3),
        ("VOICE", "SPEECHKIT", "jane", 2),
    ]
    with sqlite3.connect(db_path) as conn:
        actors = conn.execute("SELECT DISTINCT actor, reason FROM revision_log").fetchall()
        keys = conn.execute("SELECT count(*) FROM api_keys").fetchone()
    assert actors == [("import-env", "IMPORT")]
    assert keys == (3,)
    # Idempotent: a second run leaves every stored stage alone.
    code, again = import_env(db_path, fake_providers)
    assert code == 0, again
    assert again.count("skipped: a config is already stored") == 3
    assert [r[3] for r in stored_rows(db_path)] == [1, 3, 2]


def test_a_key_the_provider_rejects_is_reported_and_not_imported(
    db_path: Path, fake_providers: FakeProviders
) -> None:
    fake_providers.reject_key(LEGACY["GEMINI_API_KEY"])
    code, out = import_env(db_path, fake_providers)
    assert code == 1
    assert "POEM: failed: Gemini rejected the API key (HTTP 400" in out
    assert LEGACY["GEMINI_API_KEY"] not in out
    assert [r[0] for r in stored_rows(db_path)] == ["SONG", "VOICE"]
