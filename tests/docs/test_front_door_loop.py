"""The README's "closing the loop" block, run as written: fallback routes set through
``stageconfigctl set`` with keys on stdin, a rollout started, shown and aborted, the fleet
view — against a real server subprocess and the fake providers."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.admin.conftest import REPO, VENV_BIN, start_server
from tests.fakes.provider_server import FakeProviders

README = REPO / "README.md"
GEMINI_KEY = "AIza-readme-gemini-key-0001"
OPENAI_KEY = "sk-readme-openai-key-0002"


def _block(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split(f"<!-- section:{name} -->", 1)[1].split(f"<!-- /section:{name} -->")[0]
    (code,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    return code


def test_readme_loop_block_runs_as_written(tmp_path: Path, fake_providers: FakeProviders) -> None:
    server = start_server(tmp_path / "stageconfig.db", fake_providers)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STAGECONFIG_")}
        env.update(
            PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            STAGECONFIG_TARGET=server.target,
            GEMINI_KEY=GEMINI_KEY,
            OPENAI_KEY=OPENAI_KEY,
        )
        # -e: every line must succeed; -x: the failing line is named in the output.
        proc = subprocess.run(
            ["bash", "-ex", "-c", _block("readme-loop")],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = proc.stdout
        assert re.search(r"OPENAI\s+gpt-4o-mini", out), out  # the fallback route is stored
        assert "gemini-2.5-pro" in out  # the rollout's candidate, shown by start and status
        assert re.search(r"abort", out, re.I), out
        for key in (GEMINI_KEY, OPENAI_KEY):  # the tool never prints a key (stderr holds
            assert key not in out  # bash -x's own trace of the printf line, so not checked)
    finally:
        server.stop()
