"""Real agents for the tests: ``stageconfig-agent`` as a subprocess over a segment
directory in /dev/shm (RAM: the tests' plaintext keys never reach a disk either)."""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from stageconfig._segment import SegmentPaths, agent_running, segment_paths
from tests.support.processes import OutputProcess
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


class AgentProcess(OutputProcess):
    """``stageconfig-agent`` in a subprocess (output kept for assertions)."""

    def __init__(
        self,
        target: str,
        directory: Path,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        super().__init__({**clean_environ(), **(env or {})})
        self.target = target
        self.directory = directory
        self.args = [
            "--target", target, "--dir", str(directory),
            "--heartbeat-seconds", "0.1", "--stale-after-seconds", "1",
            *args,
        ]  # fmt: skip

    @property
    def paths(self) -> SegmentPaths:
        return segment_paths(self.target, self.directory)

    def start(self, wait: bool = True) -> AgentProcess:
        proc = self._spawn([AGENT, *self.args])
        if wait:
            wait_for(lambda: agent_running(self.paths) or proc.poll() is not None, 30, "the lock")
            assert proc.poll() is None, self.log
        return self


def pids_alive(*pids: int) -> bool:
    """Whether every pid is alive."""
    try:
        for pid in pids:
            os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


ROOT = Path(__file__).resolve().parents[2]


class PerHostWorker(OutputProcess):
    """``celery -A tests.agent.per_host_app worker --pool=prefork`` in ``cwd``."""

    ready_pattern = re.compile(" ready\\.")
    stop_timeout = 30.0

    def __init__(self, env: Mapping[str, str], queue: str, cwd: Path, concurrency: int) -> None:
        super().__init__(
            {
                **{
                    k: v
                    for k, v in clean_environ().items()
                    if not k.startswith("CELERY_") and not k.endswith("_API_KEY")
                },
                "PYTHONPATH": str(ROOT),
                **env,
            }
        )
        self.queue = queue
        self.cwd = cwd
        self.concurrency = concurrency

    def start(self, timeout: float = 60.0) -> PerHostWorker:
        command = [
            sys.executable, "-m", "celery", "-A", "tests.agent.per_host_app", "worker",
            "--pool=prefork", f"--concurrency={self.concurrency}",
            "-Q", self.queue, "-n", f"{self.queue}@%h", "-O", "fair",
            "--prefetch-multiplier=1", "--without-heartbeat", "--without-gossip",
            "--without-mingle", "-l", "INFO",
        ]  # fmt: skip
        self._spawn(command, cwd=self.cwd)
        self._wait_ready(timeout, "celery worker")
        return self


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
