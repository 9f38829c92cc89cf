"""Starting a host's agent from another program (the Celery parent, ``per_host=True``)
and keeping it alive — without importing grpc.

``AgentSupervisor.start()`` attaches to the agent already running for the same user and
targets (another worker instance's: its lock is held) or spawns one: the
``stageconfig-agent`` command as a new process (``subprocess``: spawned, not forked, so
no grpc state crosses a fork, and ``ps`` shows ``stageconfig-agent …``). A watchdog
thread checks the lock every ``check_seconds``: when no agent holds it (ours died, or
the other instance's agent went away) it spawns a new one. A spawned agent that finds
the lock taken (two instances starting at once) exits by itself; the other one serves.

``stop()`` ends the watchdog and stops the agent this supervisor spawned (SIGTERM, then
SIGKILL); other instances' watchdogs start a new one within ``check_seconds`` — their
workers keep serving the last snapshot meanwhile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from stageconfig._options import TimingOptions
from stageconfig._segment import SegmentPaths, agent_dir, agent_running, segment_paths
from stageconfig.tls import TlsConfig

log = logging.getLogger("stageconfig.agent")

DEFAULT_CHECK_SECONDS = 0.5
_PEM_ENV = ("STAGECONFIG_AGENT_CA_PEM", "STAGECONFIG_AGENT_CERT_PEM", "STAGECONFIG_AGENT_KEY_PEM")


def agent_executable() -> list[str]:
    """The ``stageconfig-agent`` command next to this Python (a virtualenv's bin), else on
    PATH, else ``python -m stageconfig.agent``."""
    here = Path(sys.executable).parent
    found = shutil.which(
        "stageconfig-agent", path=os.pathsep.join([str(here), os.environ.get("PATH", "")])
    )
    return [found] if found else [sys.executable, "-m", "stageconfig.agent"]


def agent_command(
    targets: Sequence[str],
    *,
    cache_path: str | os.PathLike[str] | None = None,
    timing: TimingOptions | None = None,
    directory: Path | None = None,
    tls: bool = False,
    extra: Sequence[str] = (),
) -> list[str]:
    """The agent's command line (no secret on it: those go in ``agent_env``)."""
    command = [*agent_executable(), "--target", ",".join(targets)]
    if tls:
        command.append("--tls")  # the roots and keys, if any, come in agent_env
    if cache_path is not None:
        command += ["--cache-path", os.fspath(cache_path)]
    if timing is not None:
        command += ["--timing", json.dumps(dataclasses.asdict(timing))]
    # The directory is named on the command line: the agent and this process's readers
    # must agree on it whatever the agent's environment says.
    command += ["--dir", str(directory or agent_dir())]
    return [*command, *extra]


def agent_env(*, token: str | None, cache_key: str | None, tls: TlsConfig | None) -> dict[str, str]:
    """The agent's environment: ours plus the secrets (never on its command line)."""
    env = {k: v for k, v in os.environ.items() if k not in _PEM_ENV}
    for name, value in (("STAGECONFIG_TOKEN", token), ("STAGECONFIG_CACHE_KEY", cache_key)):
        if value is not None:
            env[name] = value
    if tls is not None:
        pems = (tls.root_certificates, tls.client_certificate, tls.client_key)
        for name, pem in zip(_PEM_ENV, pems, strict=True):
            if pem is not None:
                env[name] = pem.decode()
    return env


class AgentSupervisor:
    """Attach to or spawn the host's agent, and keep one running (see the module)."""

    def __init__(
        self,
        targets: Sequence[str],
        command: Sequence[str],
        env: Mapping[str, str],
        *,
        directory: Path | None = None,
        check_seconds: float = DEFAULT_CHECK_SECONDS,
    ) -> None:
        self.paths: SegmentPaths = segment_paths(targets, directory)
        self.command = list(command)
        self.env = dict(env)
        self.check_seconds = check_seconds
        self.process: subprocess.Popen[bytes] | None = None
        self.spawned = 0
        """Agents this supervisor started (restarts included)."""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> AgentSupervisor:
        """Attach or spawn now, and start the watchdog thread."""
        self.ensure()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._watch, name="stageconfig-agent-watchdog", daemon=True
            )
            self._thread.start()
        return self

    def ensure(self) -> bool:
        """Spawn an agent when none holds the lock; True when one was spawned."""
        with self._lock:
            if self._stop.is_set():
                return False
            if self.process is not None and self.process.poll() is not None:
                self.process = None  # reaped: ours exited (or found another agent)
            if agent_running(self.paths):
                return False
            if self.process is not None:
                return False  # ours is starting and has not taken the lock yet
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,  # a Ctrl-C at the worker's terminal is the worker's
            )
            self.spawned += 1
            log.info(
                "stageconfig: started stageconfig-agent (pid %d) for %s",
                self.process.pid,
                self.paths.segment,
            )
            return True

    def _watch(self) -> None:
        while not self._stop.wait(self.check_seconds):
            try:
                self.ensure()
            except OSError:
                log.exception("stageconfig: could not start stageconfig-agent; retrying")

    def stop(self, timeout: float = 10.0) -> None:
        """End the watchdog; stop the agent this supervisor spawned."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._lock:
            process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout)
