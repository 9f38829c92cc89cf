"""Real agents for the tests: ``stageconfig-agent`` as a subprocess over a segment
directory in /dev/shm (RAM: the tests' plaintext keys never reach a disk either)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from stageconfig._segment import SegmentPaths, agent_running, segment_paths
from tests.support.servers import clean_environ

AGENT = str(Path(sys.executable).parent / "stageconfig-agent")


@contextmanager
def shm_dir() -> Iterator[Path]:
    """A private directory in /dev/shm, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="stageconfig-test-", dir="/dev/shm"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``condition`` until it is truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class AgentProcess:
    """``stageconfig-agent`` in a subprocess (output kept for assertions)."""

    def __init__(
        self,
        target: str,
        directory: Path,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.target = target
        self.directory = directory
        self.env = {**clean_environ(), **(env or {})}
        self.args = [
            "--target", target, "--dir", str(directory),
            "--heartbeat-seconds", "0.1", "--stale-after-seconds", "1",
            *args,
        ]  # fmt: skip
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def paths(self) -> SegmentPaths:
        return segment_paths(self.target, self.directory)

    def start(self, wait: bool = True) -> AgentProcess:
        self.proc = subprocess.Popen(
            [AGENT, *self.args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        proc = self.proc
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()
        if wait:
            wait_for(lambda: agent_running(self.paths) or proc.poll() is not None, 30, "the lock")
            assert proc.poll() is None, self.log
        return self

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log(self) -> str:
        return "".join(self.output)


def pids_alive(*pids: int) -> bool:
    """Whether every pid is alive."""
    try:
        for pid in pids:
            os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


ROOT = Path(__file__).resolve().parents[2]


class PerHostWorker:
    """``celery -A tests.agent.per_host_app worker --pool=prefork`` in ``cwd``."""

    def __init__(self, env: Mapping[str, str], queue: str, cwd: Path, concurrency: int) -> None:
        self.env = {
            **{
                k: v
                for k, v in clean_environ().items()
                if not k.startswith("CELERY_") and not k.endswith("_API_KEY")
            },
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.queue = queue
        self.cwd = cwd
        self.concurrency = concurrency
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self._ready = threading.Event()

    def start(self, timeout: float = 60.0) -> PerHostWorker:
        command = [
            sys.executable, "-m", "celery", "-A", "tests.agent.per_host_app", "worker",
            "--pool=prefork", f"--concurrency={self.concurrency}",
            "-Q", self.queue, "-n", f"{self.queue}@%h", "-O", "fair",
            "--prefetch-multiplier=1", "--without-heartbeat", "--without-gossip",
            "--without-mingle", "-l", "INFO",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("celery worker did not start:\n" + self.log)
        return self

    def _pump(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if " ready." in line:
                self._ready.set()

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log(self) -> str:
        return "".join(self.output)


def cmdline(pid: int) -> str:
    """A process's command line, as ``ps`` shows it."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def maps_grpc(pid: int) -> bool:
    """Whether grpc's extension is loaded in ``pid`` (the parent, seen from outside)."""
    return "cygrpc" in Path(f"/proc/{pid}/maps").read_text()


def files_containing(roots: Sequence[Path], needle: bytes) -> list[Path]:
    """Every regular file under ``roots`` whose bytes contain ``needle``."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                try:
                    if needle in path.read_bytes():
                        found.append(path)
                except OSError:
                    continue
    return found
