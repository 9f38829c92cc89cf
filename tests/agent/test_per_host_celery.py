"""Done-when of issue 17, with real processes only: the stageconfig server (a
subprocess), Redis, ``celery worker --pool=prefork --concurrency=4`` with
``setup_stageconfig(per_host=True)``, and the ``stageconfig-agent`` its parent spawns.

A prefork worker with 4 children shows one server stream for the host (ListWatchers);
every child serves a new config within a second of UpdateConfig with no restart; no
child (and not the parent) has imported grpc; killing the agent leaves tasks running on
the last config, and the agent the parent restarts converges with no missed revision;
a second worker instance on the host reuses the agent; no plaintext key is in any file
on disk (the data dir, the worker's cwd and temp dir; /dev/shm is RAM).
"""

from __future__ import annotations

import os
import signal
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from stageconfig._segment import lock_holder, segment_paths
from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.agent.support import (
    PerHostWorker,
    cmdline,
    files_containing,
    maps_grpc,
    pids_alive,
    shm_dir,
    wait_for,
)
from tests.fakes.provider_server import FakeProviders
from tests.integration.support import REDIS_URL, TaskClient, free_port, unique_queue
from tests.support.servers import ServerProcess, server_env

pytestmark = pytest.mark.slow

CACHE_KEY = "per-host-cache-key-9a8b7c6d5e4f"
KEY_PREFIX = "AQVN-per-host-secret-"


@dataclass
class Host:
    tmp: Path
    shm: Path
    server: ServerProcess
    stub: pbg.StageConfigServiceStub
    env: dict[str, str]


def set_voice(stub: pbg.StageConfigServiceStub, model: str, n: int) -> int:
    request = pb.UpdateConfigRequest(
        stage_type=pb.STAGE_TYPE_VOICE,
        provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
        api_key=f"{KEY_PREFIX}{n:04d}",
        model=model,
    )
    revision: int = stub.UpdateConfig(request, timeout=10).config.revision
    return revision


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    fake = FakeProviders().start()
    data = tmp_path / "data"
    data.mkdir()
    server = ServerProcess(
        server_env(data / "stageconfig.db", fake, STAGECONFIG_ADDRESS=f"127.0.0.1:{free_port()}")
    ).start()
    channel = grpc.insecure_channel(server.target)
    try:
        with shm_dir() as shm:
            env = {
                "STAGECONFIG_TARGET": server.target,
                "STAGECONFIG_CACHE_PATH": str(data / "lkg" / "stageconfig.json"),
                "STAGECONFIG_CACHE_KEY": CACHE_KEY,
                "STAGECONFIG_AGENT_DIR": str(shm),
                "CELERY_BROKER_URL": REDIS_URL,
            }
            yield Host(tmp_path, shm, server, pbg.StageConfigServiceStub(channel), env)
    finally:
        channel.close()
        server.stop()
        fake.stop()


def start_worker(host: Host, name: str, concurrency: int) -> tuple[PerHostWorker, TaskClient]:
    cwd = host.tmp / f"{name}-cwd"
    tmpdir = host.tmp / f"{name}-tmp"
    cwd.mkdir()
    tmpdir.mkdir()
    queue = unique_queue(name)
    env = {**host.env, "TMPDIR": str(tmpdir)}
    return PerHostWorker(env, queue, cwd, concurrency).start(), TaskClient(queue)


def children(tasks: TaskClient, count: int, timeout: float = 30) -> dict[int, dict[str, object]]:
    """One answer of ``agent.probe`` from each of ``count`` pool processes."""
    found: dict[int, dict[str, object]] = {}
    deadline = time.monotonic() + timeout
    while len(found) < count:
        assert time.monotonic() < deadline, f"only {sorted(found)} answered"
        for result in tasks.run_batch("agent.probe", 2 * count, hold=0.2):
            found.setdefault(result["pid"], result)
    return found


def test_one_agent_serves_every_prefork_child(host: Host) -> None:
    set_voice(host.stub, "alena", 1)
    worker, tasks = start_worker(host, "perhost-a", concurrency=4)
    second: tuple[PerHostWorker, TaskClient] | None = None
    try:
        first = children(tasks, 4)
        pids = set(first)
        assert {r["client"] for r in first.values()} == {"AttachedClient"}
        assert {r["model"] for r in first.values()} == {"alena"}
        assert not any(r["grpc_imported"] for r in first.values()), first
        assert not maps_grpc(worker.pid), "the Celery parent loaded grpc"

        # One stream for the host: the agent's, spawned by the parent, visible in ps.
        paths = segment_paths(host.env["STAGECONFIG_TARGET"], host.shm)
        agent_pid = lock_holder(paths)
        assert agent_pid is not None
        assert "stageconfig-agent" in cmdline(agent_pid)
        watchers = host.stub.ListWatchers(pb.ListWatchersRequest(), timeout=10).watchers
        assert [w.client_id.split("/", 1)[1] for w in watchers] == [
            f"stageconfig-agent/{os.getuid()}"  # stable across agent restarts
        ]
        mode = paths.segment.stat().st_mode
        assert stat.S_IMODE(mode) == 0o600, oct(mode)

        # An update reaches every child within a second, no restart.
        for n, model in enumerate(("filipp", "ermil", "zahar"), start=2):
            revision = set_voice(host.stub, model, n)
            acked = time.time()
            seen = tasks.per_process(
                "agent.probe", pids, timeout=5, accept=lambda r, m=model: r["model"] == m, hold=0.05
            )
            assert max(r["read_at"] for r in seen.values()) - acked < 1.0, seen
            assert {r["revision"] for r in seen.values()} == {revision}
        assert pids_alive(*pids)

        # Kill the agent: tasks go on with the last config; an update made meanwhile
        # reaches every child through the agent the parent restarts.
        os.kill(agent_pid, signal.SIGKILL)
        during = tasks.run_batch("agent.probe", 8)
        assert {r["model"] for r in during} == {"zahar"}
        missed = set_voice(host.stub, "omazh", 5)
        wait_for(lambda: lock_holder(paths) not in (None, agent_pid), 15, "a restarted agent")
        restarted = lock_holder(paths)
        converged = tasks.per_process(
            "agent.probe", pids, timeout=15, accept=lambda r: r["revision"] == missed, hold=0.05
        )
        assert {r["applied_revision"] for r in converged.values()} == {missed}
        # READY again within the agent's heartbeat period (its state stamp follows).
        tasks.per_process("agent.probe", pids, timeout=5, accept=lambda r: r["state"] == "READY")

        # A second worker instance on the host reuses the agent (no second stream).
        second = start_worker(host, "perhost-b", concurrency=2)
        other = children(second[1], 2)
        assert {r["model"] for r in other.values()} == {"omazh"}
        assert not any(r["grpc_imported"] for r in other.values())
        assert lock_holder(paths) == restarted
        assert len(host.stub.ListWatchers(pb.ListWatchersRequest(), timeout=10).watchers) == 1

        # The fleet view still lists every worker process (reports through the agent).
        def every_child_reported() -> bool:
            status = host.stub.GetFleetStatus(pb.GetFleetStatusRequest(), timeout=10)
            reported = {c.pid for c in status.clients if not c.silent}
            return pids | set(other) <= reported

        wait_for(every_child_reported, 10, "a report from every worker process")
    finally:
        if second is not None:
            second[0].stop()
            second[1].close()
        worker.stop()
        tasks.close()
    # No plaintext key anywhere on disk: data dir (server database, last-known-good
    # file), the workers' cwd and temp dirs.
    assert files_containing([host.tmp], KEY_PREFIX.encode()) == []
