"""Fixtures of the admin-tool tests: real server subprocesses (with and without tokens),
the tokens, and a runner for the ``stageconfigctl`` console script."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from stageconfig import ConfigClient, TimingOptions
from tests.fakes.provider_server import FakeProviders
from tests.support.servers import ServerProcess, server_env

if TYPE_CHECKING:
    from playwright.sync_api import Browser

    from tests.admin.web_process import WebProcess

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

ADMIN_TOKEN = "admin-secret-0123456789abcdef"
WORKER_TOKEN = "worker-secret-0123456789abcdef"
TOKENS = f"admin:admin:{ADMIN_TOKEN},worker:worker:{WORKER_TOKEN}"
"""STAGECONFIG_TOKENS of the servers that check tokens."""

AUTH_AVAILABLE = importlib.util.find_spec("stageconfig_server.rpc.auth") is not None
"""Bearer-token auth (rpc/auth.py) is wired into the server; token tests need it."""
needs_auth = pytest.mark.skipif(not AUTH_AVAILABLE, reason="rpc/auth.py is not wired yet")

GEMINI_KEY_A = "AIza-key-a-0000000000000000001"
OPENAI_KEY_B = "sk-proj-key-b-00000000000000000002"


def start_server(db_path: Path, fake: FakeProviders, *, tokens: str | None = None) -> ServerProcess:
    """A real ``stageconfig-server serve`` subprocess on a free port."""
    extra = {"STAGECONFIG_TOKENS": tokens} if tokens else {}
    return ServerProcess(server_env(db_path, fake, **extra)).start()


@pytest.fixture(scope="module")
def token_server(
    tmp_path_factory: pytest.TempPathFactory, _fake_providers_server: FakeProviders
) -> Iterator[ServerProcess]:
    """A server subprocess that checks TOKENS, shared by a module's tests."""
    server = start_server(
        tmp_path_factory.mktemp("token-server") / "stageconfig.db",
        _fake_providers_server,
        tokens=TOKENS,
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def web(token_server: ServerProcess) -> Iterator[WebProcess]:
    """``scripts/admin-web`` in front of ``token_server``, shared by a module's tests."""
    # Imported here: web_process imports this module (and playwright, which only the
    # page tests need).
    from tests.admin.web_process import WebProcess

    process = WebProcess(token_server.target)
    try:
        yield process
    finally:
        process.stop()


@contextmanager
def watching_worker(target: str, client_id: str) -> Iterator[ConfigClient]:
    """A ready ConfigClient with the worker token, watching as ``client_id`` and
    reporting every second (a rollout's cohort can name it)."""
    timing = TimingOptions(report_interval_seconds=1, backoff_max_seconds=1)
    client = ConfigClient(target, token=WORKER_TOKEN, client_id=client_id, timing=timing)
    client.start().wait_ready(15)
    try:
        yield client
    finally:
        client.close()


@dataclass(frozen=True)
class CtlResult:
    """What one ``stageconfigctl`` run did."""

    code: int
    stdout: str
    stderr: str


def run_ctl(
    target: str,
    *args: str,
    token: str | None = ADMIN_TOKEN,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> CtlResult:
    """Run the installed ``stageconfigctl`` console script against ``target``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STAGECONFIG_")}
    full_env["STAGECONFIG_TARGET"] = target
    if token is not None:
        full_env["STAGECONFIG_TOKEN"] = token
    full_env.update(env or {})
    proc = subprocess.run(
        [str(VENV_BIN / "stageconfigctl"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    return CtlResult(proc.returncode, proc.stdout, proc.stderr)


def ctl_env(target: str, token: str | None = ADMIN_TOKEN) -> dict[str, str]:
    """The environment ``run_ctl`` uses, for Popen-started runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGECONFIG_")}
    env["STAGECONFIG_TARGET"] = target
    if token is not None:
        env["STAGECONFIG_TOKEN"] = token
    return env


def ctl_command(*args: str) -> Sequence[str]:
    """The argv of a ``stageconfigctl`` run."""
    return [str(VENV_BIN / "stageconfigctl"), *args]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium for a module's browser tests (skipped where it is missing);
    playwright is imported only by the modules that ask for it."""
    from playwright.sync_api import expect

    from tests.admin.web_process import chromium

    expect.set_options(timeout=15_000)  # two shared cores: allow for a slow moment
    with chromium() as launched:
        yield launched
