"""``stageconfigctl`` as a person at a terminal (or a script) meets it: no traceback when
there is no terminal to prompt on, usage errors as JSON under ``--json``, a history that
fits a 100-column terminal, ``--allow-unverified``, and ``--version``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

import stageconfig_contract
from tests.admin.conftest import (
    AUTH_AVAILABLE,
    GEMINI_KEY_A,
    OPENAI_KEY_B,
    ctl_command,
    ctl_env,
    run_ctl,
)
from tests.admin.recording_server import RecordingServer
from tests.support.servers import ServerProcess


@pytest.fixture(scope="module")
def recording() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


def _without_terminal(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    # A new session has no controlling terminal: /dev/tty cannot be opened, as under
    # cron, CI or `ssh host cmd`.
    return subprocess.run(
        ctl_command(*args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=ctl_env(target),
        start_new_session=True,
        timeout=30,
        check=False,
    )


def test_prompt_key_without_a_terminal_is_one_line_and_exit_2(recording: RecordingServer) -> None:
    before = len(recording.updates)
    done = _without_terminal(
        recording.target, "set", "POEM", "--provider", "GEMINI", "--prompt-key"
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("stageconfigctl: --prompt-key needs a terminal")
    assert "--key-stdin" in done.stderr
    assert len(recording.updates) == before  # nothing was sent

    as_json = _without_terminal(
        recording.target, "--json", "set", "POEM", "--provider", "GEMINI", "--prompt-key"
    )
    assert as_json.returncode == 2
    assert "--prompt-key needs a terminal" in json.loads(as_json.stderr)["error"]["message"]


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        (("--json", "get", "BANANA"), "unknown stage 'BANANA'"),
        (("get", "BANANA", "--json"), "unknown stage 'BANANA'"),
        (("--json", "frobnicate"), "invalid choice: 'frobnicate'"),
        (("--json",), "required: COMMAND"),
        (("--json", "set", "POEM"), "required: --provider"),
        (("--json", "history", "--limit", "-1"), "must not be negative"),
    ],
)
def test_json_reports_usage_errors_as_json(
    recording: RecordingServer, args: tuple[str, ...], wanted: str
) -> None:
    done = run_ctl(recording.target, *args)
    assert done.code == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    error = json.loads(done.stderr)["error"]
    assert error["exit_code"] == 2
    assert wanted in error["message"]


def test_usage_errors_without_json_show_the_usage_and_one_error_line(
    recording: RecordingServer,
) -> None:
    done = run_ctl(recording.target, "get", "BANANA")
    assert done.code == 2
    usage, error = done.stderr.splitlines()
    assert usage.startswith("usage: stageconfigctl get")
    assert error == (
        "stageconfigctl: argument STAGE: unknown stage 'BANANA' (one of POEM, VOICE, SONG, CLIP)"
    )


def test_allow_unverified_is_sent_only_when_asked(recording: RecordingServer) -> None:
    plain = run_ctl(recording.target, "set", "POEM", "--provider", "GEMINI")
    assert plain.code == 0, plain.stderr
    asked = run_ctl(recording.target, "set", "POEM", "--provider", "GEMINI", "--allow-unverified")
    assert asked.code == 0, asked.stderr
    *_, without, with_flag = recording.updates
    assert (without.allow_unverified, with_flag.allow_unverified) == (False, True)


def test_version_is_the_one_version() -> None:
    done = subprocess.run(
        ctl_command("--version"), capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0
    assert done.stdout == f"stageconfigctl {stageconfig_contract.__version__}\n"


def test_history_fits_a_100_column_terminal_unless_wide(token_server: ServerProcess) -> None:
    target = token_server.target
    comment = "moving POEM to OpenAI for the autumn campaign, agreed with the content team"
    steps = [
        ("--provider", "GEMINI", "--key-stdin", "--model", "gemini-2.5-flash", GEMINI_KEY_A),
        ("--provider", "OPENAI", "--key-stdin", "--model", "gpt-4o", OPENAI_KEY_B),
    ]
    for *flags, key in steps:
        saved = run_ctl(target, "set", "POEM", *flags, "--comment", comment, stdin=key + "\n")
        assert saved.code == 0, saved.stderr

    narrow = run_ctl(target, "history", "--limit", "0", env={"COLUMNS": "100"})
    assert narrow.code == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert lines[0].split() == ["REV", "TIME", "STAGE", "REASON", "ACTOR", "CHANGES", "COMMENT"]
    assert len(lines) > 2
    assert max(len(line) for line in lines) <= 100, narrow.stdout
    newest = lines[1]
    actor = "admin" if AUTH_AVAILABLE else "anonymous"  # the token's name
    assert newest.split()[3:6] == ["POEM", "ADMIN_UPDATE", actor]
    assert "provider_kind: GEMINI" in newest  # the changes start readable, then are cut
    assert "…" in newest

    wide = run_ctl(target, "history", "--limit", "0", "--wide", env={"COLUMNS": "100"})
    assert wide.code == 0, wide.stderr
    newest_wide = wide.stdout.splitlines()[1]
    assert len(newest_wide) > 100
    assert "provider_kind: GEMINI → OPENAI" in newest_wide
    assert "model: gemini-2.5-flash → gpt-4o" in newest_wide
    assert newest_wide.endswith(comment)
    for result in (narrow, wide):
        assert GEMINI_KEY_A not in result.stdout
        assert OPENAI_KEY_B not in result.stdout
