"""The agent process and its supervisor: one agent per user and targets (a second one
exits), the agent's files are 0600, and the supervisor attaches to a running agent,
restarts a dead one, and stops only the one it started."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

from stageconfig._segment import lock_holder
from stageconfig.agent._service import EXIT_ALREADY_RUNNING
from stageconfig.agent.launcher import AgentSupervisor, agent_command, agent_env
from tests.agent.support import AgentProcess, cmdline, shm_dir, wait_for
from tests.client.conftest import ThreadedServer


def test_one_agent_per_segment_and_owner_only_files(server: ThreadedServer) -> None:
    server.voice("alena")
    with shm_dir() as directory:
        first = AgentProcess(server.target, directory).start()
        try:
            wait_for(first.paths.socket.exists, 10, "the report socket")
            wait_for(first.paths.segment.exists, 10, "the segment")
            for path in (first.paths.segment, first.paths.lock, first.paths.socket):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            assert lock_holder(first.paths) == first.pid
            second = AgentProcess(server.target, directory, args=["--lock-wait-seconds", "0.3"])
            second.start(wait=False)
            assert second.stop(signal.SIGCONT, timeout=30) == EXIT_ALREADY_RUNNING
            assert f"pid {first.pid} already serves" in second.log
            assert len(server.watchers().watchers) == 1
        finally:
            first.stop()


def _supervisor(target: str, directory: Path) -> AgentSupervisor:
    command = agent_command([target], directory=directory, extra=["--heartbeat-seconds", "0.1"])
    return AgentSupervisor([target], command, agent_env(token=None, cache_key=None, tls=None),
                           directory=directory, check_seconds=0.1)  # fmt: skip


def _running(*supervisors: AgentSupervisor) -> list[int]:
    return [
        s.process.pid for s in supervisors if s.process is not None and s.process.poll() is None
    ]


def test_the_supervisor_restarts_a_dead_agent_and_shares_a_running_one(
    server: ThreadedServer,
) -> None:
    server.voice("alena")
    with shm_dir() as directory:
        one = _supervisor(server.target, directory).start()
        two: AgentSupervisor | None = None
        try:
            wait_for(lambda: lock_holder(one.paths) is not None, 30, "the agent")
            first = lock_holder(one.paths)
            assert first is not None
            assert one.spawned == 1
            # ps shows the console script (after its interpreter): ``… bin/stageconfig-agent``.
            assert any(w.endswith("/stageconfig-agent") for w in cmdline(first).split()[:2])
            two = _supervisor(server.target, directory).start()
            assert two.spawned == 0  # attached to the running agent
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: lock_holder(one.paths) not in (None, first), 30, "a new agent")
            restarted = lock_holder(one.paths)
            # Both watchdogs may have spawned one; the agent that lost the lock exits.
            wait_for(lambda: _running(one, two) == [restarted], 30, "a single agent")
            owner = one if one.process is not None and one.process.pid == restarted else two
            other = two if owner is one else one
            owner.stop()  # its agent goes; the other supervisor starts the next one
            wait_for(lambda: lock_holder(one.paths) not in (None, restarted), 30, "a third agent")
            wait_for(lambda: _running(other) == [lock_holder(one.paths)], 30, "the other's agent")
        finally:
            one.stop()
            if two is not None:
                two.stop()
        wait_for(lambda: lock_holder(one.paths) is None, 30, "every agent stopped")
