"""docs/agent.md's Python example, run as written (a fresh interpreter) against a real
agent and server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.agent.support import AgentProcess, shm_dir
from tests.client.conftest import ThreadedServer

PAGE = Path(__file__).resolve().parents[2] / "docs" / "agent.md"
DOCS_TARGET = "127.0.0.1:50051"


def test_the_attach_example_runs(server: ThreadedServer) -> None:
    server.voice("alena")
    text = PAGE.read_text(encoding="utf-8")
    section = text.split("<!-- section:agent-attach -->", 1)[1].split("<!-- /section")[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    assert DOCS_TARGET in code
    code = code.replace(DOCS_TARGET, server.target)
    with shm_dir() as directory:
        agent = AgentProcess(server.target, directory).start()
        try:
            env = {**agent.env, "STAGECONFIG_AGENT_DIR": str(directory)}
            proc = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                check=False,
            )
        finally:
            agent.stop()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["SPEECHKIT", "alena", "READY"]
