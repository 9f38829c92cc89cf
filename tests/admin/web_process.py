"""``scripts/admin-web`` in a subprocess on a free port, and logging in to it over HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading

import httpx

from tests.admin.conftest import REPO

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
