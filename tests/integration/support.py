"""Real processes for the integration tests: a Celery worker running the example app,
and a Celery client to send it tasks through the real Redis broker."""

from __future__ import annotations

import os
import re
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from celery import Celery

from tests.fakes.provider_server import FakeProviders
from tests.support.processes import OutputProcess

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


def stack_env(target: str, fake: FakeProviders, **settings: str) -> dict[str, str]:
    """The settings of a worker using the server(s) ``target``, the Redis broker and result
    backend and ``fake``'s providers, plus ``settings`` (``STAGECONFIG_*`` by name)."""
    return {
        "STAGECONFIG_TARGET": target,
        **settings,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_RESULT_BACKEND": REDIS_URL,
        **fake.env(),
    }


class CeleryWorker(OutputProcess):
    """``celery -A celery_app worker`` (the example app plus the probe tasks)."""

    ready_pattern = _READY

    def __init__(
        self,
        env: Mapping[str, str],
        queue: str,
        *,
        pool: str = "prefork",
        concurrency: int = 2,
        python: str = sys.executable,
    ) -> None:
        super().__init__(worker_env(env))
        self.python = python
        self.queue = queue
        self.pool = pool
        self.concurrency = concurrency

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
        self._spawn(command, cwd=EXAMPLES)
        self._wait_ready(timeout, "celery worker")
        return self


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
