"""``scripts/admin-web`` in a subprocess on a free port, logging in to it over HTTP, and
the headless Chromium the browser tests drive it with."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.admin.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "artifacts"
"""Where the browser tests leave their screenshots."""

_LISTENING = re.compile(r"stageconfig-web listening on (http://\S+)")
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class WebProcess:
    """``scripts/admin-web`` in a subprocess on a free port."""

    def __init__(self, target: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STAGECONFIG_")}
        self.proc = subprocess.Popen(
            [str(REPO / "scripts" / "admin-web"), "--target", target, "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.url = ""
        self.output: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(60) or not self.url:
            self.stop()
            raise RuntimeError("admin-web did not start:\n" + "".join(self.output))

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if match := _LISTENING.search(line):
                self.url = match.group(1)
                self._ready.set()
        self._ready.set()  # exited: let the waiter see it

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def log_in_over_http(client: httpx.Client, token: str) -> httpx.Response:
    """Post the login form with ``token`` (and the login page's CSRF token)."""
    page = client.get("/login")
    csrf = _CSRF.search(page.text)
    assert csrf is not None
    return client.post("/login", data={"token": token, "csrf_token": csrf.group(1)})


@contextmanager
def chromium() -> Iterator[Browser]:
    """The system's headless Chromium (the test is skipped when it is not installed)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(
            f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does it as root)"
        )
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def log_in_in_browser(page: Page, url: str, token: str) -> None:
    """Log in through the login form (an empty ``token`` on a server without tokens)."""
    page.goto(f"{url}/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/admin/providers")
