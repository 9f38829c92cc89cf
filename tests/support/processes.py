"""A subprocess the tests start, read and stop: its combined output is kept (a thread
drains the pipe, so a chatty process never blocks on it) and a line matching
``ready_pattern`` marks it ready. Agents, servers and Celery workers build on it."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class OutputProcess:
    """One subprocess with stdout+stderr collected in ``output``."""

    ready_pattern: re.Pattern[str] | None = None
    """A line matching this marks the process ready (see ``_wait_ready``)."""
    stop_timeout = 20.0

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self._ready = threading.Event()

    def _spawn(self, command: Sequence[str], cwd: Path | None = None) -> subprocess.Popen[str]:
        self._ready.clear()
        proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.proc = proc
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()
        return proc

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line)
            if self.ready_pattern is not None and (match := self.ready_pattern.search(line)):
                self._on_ready(match)
                self._ready.set()

    def _on_ready(self, match: re.Match[str]) -> None:
        """Hook: read what the ready line says (e.g. an address)."""

    def _wait_ready(self, timeout: float, what: str) -> None:
        """Wait for the ready line; stop the process and fail with its output if it exits
        or the deadline passes first."""
        proc = self.proc
        assert proc is not None
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                code = proc.poll()
                self.stop()
                raise RuntimeError(f"{what} did not start (exit {code}):\n" + self.log)

    def stop(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> int | None:
        """Send ``sig`` if still running and wait for exit (SIGKILL if it does not come in
        time); returns the exit code, None if never started."""
        if self.proc is None:
            return None
        wait = self.stop_timeout if timeout is None else timeout
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(wait)

    def kill(self) -> None:
        """SIGKILL, no grace."""
        self.stop(signal.SIGKILL)

    @property
    def pid(self) -> int:
        """The process id (started processes only)."""
        assert self.proc is not None
        return self.proc.pid

    @property
    def log(self) -> str:
        """Everything the process printed so far."""
        return "".join(self.output)
