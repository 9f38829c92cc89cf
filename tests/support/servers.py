"""Real stageconfig servers for tests.

- ``start_app``: a StageConfigApp in this process's event loop on port 0, with a
  SQLite file under a temp dir and providers pointed at a FakeProviders server.
- ``ServerProcess``: ``python -m stageconfig_server serve`` as a real subprocess (for
  kill -9, restarts and anything that must cross a process boundary).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from stageconfig_server.app import StageConfigApp
from stageconfig_server.settings import LegacySettings, Settings
from tests.fakes.provider_server import FakeProviders
from tests.support.processes import OutputProcess

TEST_SECRET = "test-admin-secret-0123456789"
_LISTENING = re.compile(r"stageconfig listening on (\S+)")


def server_env(db_path: Path, fake: FakeProviders | None, **extra: str) -> dict[str, str]:
    """The environment of a test server: its database, secret and provider endpoints."""
    env = {
        "STAGECONFIG_DATABASE_URL": f"sqlite+aiosqlite:///{db_path}",
        "STAGECONFIG_ADDRESS": "127.0.0.1:0",
        "ADMIN_SECRET_KEY": TEST_SECRET,
        "STAGECONFIG_HEARTBEAT_SECONDS": "1",
        "STAGECONFIG_PROVIDER_TIMEOUT_SECONDS": "3",
    }
    if fake is not None:
        env.update(fake.env())
    env.update(extra)
    return env


def settings_for(env: Mapping[str, str]) -> Settings:
    """Settings from ``env`` (by documented name); no .env file is read."""
    return Settings(_env_file=None, **env)  # type: ignore[call-arg]


async def start_app(
    db_path: Path,
    fake: FakeProviders | None,
    *,
    legacy: LegacySettings | None = None,
    clock: Callable[[], datetime] | None = None,
    run_sync: bool = False,
    **extra: str,
) -> StageConfigApp:
    """A started in-process server (call ``await app.stop()`` when done)."""
    settings = settings_for(server_env(db_path, fake, **extra))
    return await StageConfigApp.start(
        settings,
        legacy=legacy if legacy is not None else empty_legacy(),
        clock=clock,
        run_sync=run_sync,
    )


def empty_legacy(**values: str) -> LegacySettings:
    """Legacy settings with only ``values`` (by env name), ignoring the real environment."""
    return LegacySettings.model_validate(values)


class ServerProcess(OutputProcess):
    """``stageconfig-server serve`` in a subprocess; stderr is kept for assertions."""

    ready_pattern = _LISTENING

    def __init__(self, env: Mapping[str, str], cwd: Path | None = None) -> None:
        super().__init__({**clean_environ(), **env})
        self.cwd = cwd
        self.target = ""

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start and wait until the server prints its address."""
        self._spawn([sys.executable, "-m", "stageconfig_server", "serve"], cwd=self.cwd)
        self._wait_ready(timeout, "server")
        return self

    def _on_ready(self, match: re.Match[str]) -> None:
        self.target = match.group(1)

    def run_to_exit(self, timeout: float = 30.0) -> tuple[int, str]:
        """Start and wait for the process to exit by itself (e.g. a refused start)."""
        proc = subprocess.run(
            [sys.executable, "-m", "stageconfig_server", "serve"],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return proc.returncode, proc.stdout + proc.stderr


def clean_environ() -> dict[str, str]:
    """This process's environment without anything stageconfig or the legacy fallback
    would read (PATH, HOME and the rest are kept)."""
    legacy = {
        "GEMINI_API_KEY",
        "OPENAI_API_KEY",
        "YANDEX_GPT_API_KEY",
        "SPEECHKIT_API_KEY",
        "SUNO_API_KEY",
        "PIKA_API_KEY",
    }
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STAGECONFIG_") and not k.startswith("ADMIN_SECRET") and k not in legacy
    }
