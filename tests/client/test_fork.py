"""Fork safety: no grpc object before start(), and a client carried across fork()
starts over in the child (new pid, new channel and threads) and keeps converging."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.conftest import ThreadedServer

SCRIPT = Path(__file__).with_name("fork_script.py")

NO_GRPC_OBJECTS = """
import gc, threading
import grpc
import stageconfig
import stageconfig.contrib.celery
from stageconfig import ConfigClient
client = ConfigClient("127.0.0.1:1", stages=["POEM"])
assert client.state.value == "CONNECTING"
assert threading.active_count() == 1, threading.enumerate()
grpc_objects = [o for o in gc.get_objects() if isinstance(o, (grpc.Channel, grpc.Call))]
assert not grpc_objects, grpc_objects
print("ok")
"""


def test_no_grpc_object_or_thread_exists_before_start() -> None:
    result = subprocess.run(
        [sys.executable, "-c", NO_GRPC_OBJECTS], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize("mode", ["started", "unstarted"])
def test_a_client_carried_across_fork_converges_in_the_child(
    server: ThreadedServer, mode: str
) -> None:
    server.voice("alena")
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), server.target, "zahar", mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line.strip())
            if line.startswith("child ready"):
                server.voice("zahar")
        assert process.wait(30) == 0, lines
    finally:
        process.kill()
    converged = [line.split() for line in lines if " converged " in line]
    expected = {"child", "parent"} if mode == "started" else {"child"}
    assert {c[0] for c in converged} == expected, lines
    assert len({c[3] for c in converged}) == len(expected)  # distinct pids
    assert "child ready alena" in lines
