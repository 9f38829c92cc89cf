"""The README, followed as a newcomer would: its first grpcurl calls against a fresh
server, the ``stageconfigctl`` lines after them, and the client in ten lines, each run
for real (grpcurl binary, the console script, a fresh Python interpreter)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.admin.conftest import REPO, VENV_BIN, run_ctl, start_server
from tests.admin.test_grpcurl import DOCS_TARGET, grpcurl_blocks, run_block
from tests.fakes.provider_server import FakeProviders

README = REPO / "README.md"


def _section(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    return text.split(f"<!-- section:{name} -->", 1)[1].split(f"<!-- /section:{name} -->")[0]


def test_the_tools_the_readme_names_are_in_the_virtualenv() -> None:
    # `source .venv/bin/activate` is how the README puts them on PATH.
    for tool in ("grpcurl", "stageconfigctl", "stageconfig-server", "celery"):
        assert (VENV_BIN / tool).exists(), tool
    assert "source .venv/bin/activate" in README.read_text(encoding="utf-8")


def test_front_door_walkthrough(tmp_path: Path, fake_providers: FakeProviders) -> None:
    (first_calls,) = grpcurl_blocks(README)
    assert {e.call for e in first_calls} == {"list", "UpdateConfig", "GetActiveConfig"}
    server = start_server(tmp_path / "stageconfig.db", fake_providers)
    try:
        run_block(first_calls, server.target)

        status = run_ctl(server.target, "status", token=None)
        assert status.code == 0, status.stderr
        assert re.search(r"VOICE\s+SPEECHKIT\s+alena\s+UNVERIFIED", status.stdout), status.stdout
        history = run_ctl(server.target, "history", "VOICE", token=None)
        assert history.code == 0, history.stderr
        assert "AQVN-your-key" not in status.stdout + history.stdout
        fleet = run_ctl(server.target, "fleet", token=None)
        assert fleet.code == 0, fleet.stderr

        (code,) = re.findall(r"```python\n(.*?)```", _section("readme-client"), re.S)
        code = code.replace(DOCS_TARGET, server.target)
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0] == "SPEECHKIT alena"
        assert lines[1].startswith("StageConfig(stage_type=VOICE")
        assert "AQVN-your-key" not in proc.stdout
    finally:
        server.stop()
