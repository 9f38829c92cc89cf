"""The servers a run starts, as child processes on loopback, and what is read from them.

Each server is a real process (``python -m stageconfig_server serve``, the bare floor
server, ``etcd``) so its RSS and CPU time can be read from ``/proc`` and so it never
shares an interpreter (or a GIL) with the load it is measured under.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import grpc

from stageconfig_contract.facts import LEGACY_ENV_NAMES

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_STAGECONFIG_READY = re.compile(r"stageconfig listening on (\S+)")
_BARE_READY = re.compile(r"bare listening on (\S+)")

# Variables a developer's shell may carry that would change what the server serves (the
# legacy fallback) or how (tokens, TLS, metrics): the bench sets what it needs itself.
_INHERITED_PREFIXES = ("STAGECONFIG_", "ADMIN_SECRET_KEY")
_LEGACY_NAMES = LEGACY_ENV_NAMES


def raise_fd_limit(wanted: int = 65_536) -> int:
    """Raise this process's open-file limit as far as allowed; returns the soft limit.

    10,000 watchers are 10,000 sockets in the server and spread over the client
    processes; children inherit the limit, so the orchestrator raises it first.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):  # only root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, so utime (14) and stime (15) sit at
    # indexes 11 and 12 of what follows ")".
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers that need a fixed
    port: the restarted stageconfig server, etcd)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without stageconfig/legacy settings, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_INHERITED_PREFIXES) and name not in _LEGACY_NAMES
    }
    env.update(extra)
    return env


class ChildServer:
    """A server process: started, waited for until ready, measured, stopped."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
        ready_line: re.Pattern[str] | None = None,
        ready_probe: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self._argv = list(argv)
        self._env = dict(env)
        self._cwd = cwd
        self._log_path = log_path
        self._ready_line = ready_line
        self._ready_probe = ready_probe
        self._ready = threading.Event()
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""

    @property
    def pid(self) -> int:
        """The process id (the server must be running)."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> ChildServer:
        """Start and wait until the server says (or a probe shows) that it serves."""
        self._ready.clear()
        log = self._log_path.open("a")
        self.proc = subprocess.Popen(
            self._argv,
            env=self._env,
            cwd=self._cwd,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        log.close()
        threading.Thread(target=self._pump, name=f"{self.name}-stdout", daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            if self._ready_line is not None and self._ready.wait(0.02):
                return self
            if self._ready_probe is not None and self._ready_probe():
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop(timeout=5)
                raise RuntimeError(
                    f"{self.name} did not start (exit {self.proc.returncode}); see {self._log_path}"
                )
            if self._ready_line is None:
                time.sleep(0.05)

    def _pump(self) -> None:
        proc = self.proc
        if proc is None or proc.stdout is None:
            return
        with self._log_path.open("a") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if self._ready_line is not None and (match := self._ready_line.search(line)):
                    self.address = match.group(1)
                    self._ready.set()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> float:
        """Send ``sig``, wait for the exit; returns how long the exit took (s)."""
        proc = self.proc
        if proc is None:
            return 0.0
        started = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        return time.monotonic() - started

    def rss_kib(self) -> int:
        """Resident set size now, in KiB (VmRSS)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for {self.name}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process (all its threads) so far."""
        return cpu_seconds(self.pid)


def stageconfig_server(
    *, workdir: Path, db_path: Path, secret: str, port: int, heartbeat_seconds: float
) -> ChildServer:
    """``python -m stageconfig_server serve`` on 127.0.0.1:``port`` (0 = any)."""
    env = clean_env(
        {
            "STAGECONFIG_ADDRESS": f"127.0.0.1:{port}",
            "STAGECONFIG_DATABASE_URL": f"sqlite+aiosqlite:///{db_path}",
            "ADMIN_SECRET_KEY": secret,
            "STAGECONFIG_HEARTBEAT_SECONDS": f"{heartbeat_seconds:g}",
        }
    )
    return ChildServer(
        "stageconfig",
        [sys.executable, "-m", "stageconfig_server", "serve"],
        env=env,
        cwd=workdir,  # no developer .env is read from here
        log_path=workdir / "stageconfig.log",
        ready_line=_STAGECONFIG_READY,
    )


def bare_server(*, workdir: Path, response_path: Path) -> ChildServer:
    """The floor: a bare grpc.aio server answering GetActiveConfig with a fixed message."""
    return ChildServer(
        "bare",
        [sys.executable, "-m", "bench_lib.bare", "--response", str(response_path)],
        env=clean_env({"PYTHONPATH": str(Path(__file__).resolve().parents[1])}),
        cwd=workdir,
        log_path=workdir / "bare.log",
        ready_line=_BARE_READY,
    )


def etcd_server(*, workdir: Path, client_port: int, peer_port: int) -> ChildServer:
    """A single-member etcd with a fresh data dir, on non-default loopback ports."""
    binary = shutil.which("etcd") or "/usr/bin/etcd"
    client_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    target = f"127.0.0.1:{client_port}"

    def probe() -> bool:
        from bench_lib import wire

        channel = grpc.insecure_channel(target)
        try:
            range_ = channel.unary_unary(
                wire.ETCD_RANGE,
                request_serializer=wire.etcd.RangeRequest.SerializeToString,
                response_deserializer=wire.etcd.RangeResponse.FromString,
            )
            range_(wire.etcd.RangeRequest(key=b"probe"), timeout=1.0)
            return True
        except grpc.RpcError:
            return False
        finally:
            channel.close()

    server = ChildServer(
        "etcd",
        [
            binary,
            "--name=bench",
            f"--data-dir={workdir / 'etcd-data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=bench={peer_url}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-level=warn",
        ],
        env=clean_env({}),
        cwd=workdir,
        log_path=workdir / "etcd.log",
        ready_probe=probe,
    )
    server.address = target
    return server
