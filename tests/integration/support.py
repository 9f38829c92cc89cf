"""Real processes for the integration tests: a Celery worker running the example app,
and a Celery client to send it tasks through the real Redis broker."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from celery import Celery

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "clients" / "python" / "examples"
REDIS_URL = "redis://127.0.0.1:6379/14"
"""A Redis database of its own for these tests; every test uses its own queue."""

_READY = re.compile(r"\S+@\S+ ready\.")


def free_port() -> int:
    """A port nothing listens on now (for a server that must restart on the same one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unique_queue(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def worker_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a worker: ours minus stageconfig/legacy settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STAGECONFIG_", "ADMIN_SECRET", "CELERY_"))
        and not k.endswith("_API_KEY")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLES), str(ROOT)])
    env.update(extra)
    return env


class CeleryWorker:
    """``celery -A celery_app worker`` (the example app plus the probe tasks)."""

    def __init__(
        self,
        env: Mapping[str, str],
        queue: str,
        *,
        pool: str = "prefork",
        concurrency: int = 2,
        python: str = sys.executable,
    ) -> None:
        self.env = worker_env(env)
        self.python = python
        self.queue = queue
        self.pool = pool
        self.concurrency = concurrency
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self._ready = threading.Event()

    def start(self, timeout: float = 30.0) -> CeleryWorker:
        command = [
            self.python, "-m", "celery", "-A", "celery_app", "worker",
            "-I", "tests.integration.probe_tasks",
            f"--pool={self.pool}", f"--concurrency={self.concurrency}",
            "-Q", self.queue, "-n", f"{self.queue}@%h",
            "-O", "fair", "--prefetch-multiplier=1",
            "--without-heartbeat", "--without-gossip", "--without-mingle",
            "-l", "INFO",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command,
            cwd=EXAMPLES,
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
            if _READY.search(line):
                self._ready.set()

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM); SIGKILL if it does not finish in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    @property
    def log(self) -> str:
        return "".join(self.output)


def require_redis() -> None:
    """Fail (not skip) with the fix when the broker is not there."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        raise AssertionError(
            f"these tests need Redis at {REDIS_URL} ({exc}); start one with: redis-server "
            '--daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp'
        ) from exc


class TaskClient:
    """Sends the example's and the probes' tasks to one queue and waits for results."""

    def __init__(self, queue: str) -> None:
        require_redis()
        self.queue = queue
        self.app = Celery(f"client-{queue}", broker=REDIS_URL, backend=REDIS_URL)
        self.app.conf.update(broker_connection_retry_on_startup=True)

    def run(self, name: str, timeout: float = 20.0, **kwargs: Any) -> Any:
        """One task, its result."""
        return self.app.send_task(name, kwargs=kwargs, queue=self.queue).get(timeout=timeout)

    def run_batch(self, name: str, count: int, timeout: float = 20.0, **kwargs: Any) -> list[Any]:
        """``count`` tasks sent at once (a pool spreads them), their results."""
        pending = [self.app.send_task(name, kwargs=kwargs, queue=self.queue) for _ in range(count)]
        return [result.get(timeout=timeout) for result in pending]

    def per_process(
        self,
        name: str,
        pids: set[int],
        timeout: float,
        accept: Callable[[Any], bool] = lambda _: True,
        **kwargs: Any,
    ) -> dict[int, Any]:
        """The first accepted result from every process in ``pids``, sending batches
        until each has answered (fails at the deadline)."""
        found: dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        while set(found) != pids:
            if time.monotonic() > deadline:
                raise AssertionError(f"no accepted answer from {pids - set(found)}: {found}")
            for result in self.run_batch(name, 2 * len(pids), **kwargs):
                if result["pid"] in pids and result["pid"] not in found and accept(result):
                    found[result["pid"]] = result
        return found

    def close(self) -> None:
        import redis

        redis.Redis.from_url(REDIS_URL).delete(self.queue)
        self.app.close()
