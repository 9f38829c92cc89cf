"""The session of docs/rollouts.md, run for real: every ``$ stageconfigctl …`` line of its
session block against a fresh server subprocess with eight ConfigClients watching as
``worker-1`` … ``worker-8``, the output compared with the page's (times and ages
aside). A command whose shown output starts with ``stageconfigctl:`` must fail; every
other one must succeed.

Between the commands the workers do what the page says they do: they start watching
after the first ``set``, and once a rollout runs they record the task outcomes the
page's figures show (each canary 8 succeeded and 2 failed, each stable worker 10
succeeded, ``worker-2`` one failed more). A read-only command (``status``) is repeated
until its output matches — the reports take up to a report interval to arrive — and
fails the test if it never does.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stageconfig import ConfigClient, StageType, TimingOptions
from tests.admin.conftest import REPO, ctl_env, start_server
from tests.fakes.provider_server import FakeProviders
from tests.support.servers import ServerProcess

PAGE = REPO / "docs" / "rollouts.md"
WORKERS = [f"worker-{n}" for n in range(1, 9)]
READ_ONLY = ("stageconfigctl status", "stageconfigctl rollout status", "stageconfigctl history")
_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ")
_AGE = re.compile(r"\b\d+[smhd]\b")


@dataclass(frozen=True)
class Step:
    """One command of the session and the output the page shows for it."""

    command: str
    shown: str

    @property
    def fails(self) -> bool:
        return self.shown.startswith("stageconfigctl:")


def session_steps(page: Path = PAGE) -> list[Step]:
    """The ``$ `` commands of the page's session block, each with the lines after it."""
    text = page.read_text(encoding="utf-8")
    section = text.split("<!-- session:rollout -->", 1)[1].split("<!-- /session:rollout -->")[0]
    (block,) = re.findall(r"```console\n(.*?)```", section, re.S)
    steps: list[Step] = []
    command, lines = "", list[str]()
    for line in block.splitlines():
        if line.startswith("$ "):
            if command:
                steps.append(Step(command, "\n".join(lines)))
            command, lines = line[2:], []
        else:
            lines.append(line)
    steps.append(Step(command, "\n".join(lines)))
    return steps


def normalized(text: str) -> str:
    """Times and ages out, runs of spaces (table padding) as one, no trailing blanks."""
    text = _AGE.sub("<age>", _TIME.sub("<time>", text))
    return "\n".join(" ".join(line.split()) for line in text.strip().splitlines())


def run(step: Step, target: str) -> tuple[int, str]:
    proc = subprocess.run(
        ["bash", "-c", step.command],
        capture_output=True,
        text=True,
        env=ctl_env(target, token=None),
        timeout=30,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


class Workers:
    """The eight watching clients of the session."""

    def __init__(self, target: str) -> None:
        timing = TimingOptions(report_interval_seconds=1, backoff_max_seconds=1)
        self.clients = {cid: ConfigClient(target, client_id=cid, timing=timing) for cid in WORKERS}
        self.started = False

    def start(self) -> None:
        self.started = True
        for client in self.clients.values():
            client.start().wait_ready(15)

    def run_tasks(self, candidate_model: str) -> None:
        """The outcomes the page shows, once every canary holds the candidate."""
        deadline = time.monotonic() + 10
        canaries: set[str] = set()
        while time.monotonic() < deadline:
            canaries = {
                cid
                for cid, client in self.clients.items()
                if client.get(StageType.POEM).model == candidate_model
            }
            if len(canaries) == 3:
                break
            time.sleep(0.05)
        assert len(canaries) == 3, f"the page's 30 % cohort is three workers, not {canaries}"
        for cid, client in self.clients.items():
            ok, failed = (8, 2) if cid in canaries else (10, 1 if cid == "worker-2" else 0)
            for _ in range(ok):
                client.record_outcome(StageType.POEM, True, duration_seconds=0.8)
            for _ in range(failed):
                client.record_outcome(StageType.POEM, False, "RateLimitError", 0.3)

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


@pytest.fixture
def server(tmp_path: Path, fake_providers: FakeProviders) -> Iterator[ServerProcess]:
    process = start_server(tmp_path / "stageconfig.db", fake_providers)
    try:
        yield process
    finally:
        process.stop()


def test_the_session_has_the_commands_the_page_describes() -> None:
    commands = [s.command for s in session_steps()]
    for needed in ("rollout start", "rollout status", "rollout abort", "rollout promote"):
        assert any(needed in c for c in commands), needed
    assert any(c.startswith("stageconfigctl status") for c in commands)
    assert any(s.fails for s in session_steps()), "the refusal while a rollout runs"


def test_the_session_of_the_page_runs_as_shown(server: ServerProcess) -> None:
    workers = Workers(server.target)
    try:
        for step in session_steps():
            deadline = time.monotonic() + 15
            while True:
                code, output = run(step, server.target)
                matches = normalized(output) == normalized(step.shown)
                if matches or not step.command.startswith(READ_ONLY):
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            shown = f"$ {step.command}\nexit {code}\n{output}"
            assert (code != 0) == step.fails, shown
            assert normalized(output) == normalized(step.shown), shown
            if " set POEM " in step.command and not step.fails and not workers.started:
                workers.start()
            if "rollout start" in step.command and "--percent" in step.command:
                workers.run_tasks(re.findall(r"--model (\S+)", step.command)[0])
    finally:
        workers.close()
