"""``stageconfigctl`` as a subprocess against a real server subprocess that checks tokens.

The tests share one server (a module fixture), so each reads the state it starts from
instead of assuming a fresh database.
"""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import threading
import time

from tests.admin.conftest import (
    ADMIN_TOKEN,
    AUTH_AVAILABLE,
    GEMINI_KEY_A,
    OPENAI_KEY_B,
    WORKER_TOKEN,
    ctl_command,
    ctl_env,
    needs_auth,
    run_ctl,
)
from tests.support.servers import ServerProcess


def _revision(target: str, stage: str) -> int:
    view = json.loads(run_ctl(target, "get", stage, "--json").stdout)
    return int(view["config"]["revision"]) if view["config"] else 0


def test_set_reads_the_key_from_stdin_and_shows_only_masks(token_server: ServerProcess) -> None:
    target = token_server.target
    saved = run_ctl(
        target,
        "set",
        "poem",
        "--provider",
        "gemini",
        "--key-stdin",
        "--comment",
        "via ctl",
        stdin=GEMINI_KEY_A + "\n",
    )
    assert saved.code == 0, saved.stderr
    assert "saved at revision" in saved.stdout
    assert "GEMINI" in saved.stdout
    assert "AIza-…0001" in saved.stdout

    status = run_ctl(target, "status")
    assert status.code == 0, status.stderr
    header, *rows = status.stdout.splitlines()
    assert header.split()[:4] == ["STAGE", "PROVIDER", "MODEL", "STATUS"]
    poem = next(r for r in rows if r.startswith("POEM"))
    assert "GEMINI" in poem
    assert "ACTIVE" in poem
    assert "AIza-…0001" in poem
    assert any(r.startswith("SONG") and "UNCONFIGURED" in r for r in rows)

    got = run_ctl(target, "get", "POEM")
    assert "key fingerprint" in got.stdout
    as_json = json.loads(run_ctl(target, "--json", "status").stdout)
    assert [s["stage_type"] for s in as_json["stages"]] == ["POEM", "VOICE", "SONG", "CLIP"]
    # The key left the terminal only once, into the server: no output shows it.
    for result in (saved, status, got):
        assert GEMINI_KEY_A not in result.stdout + result.stderr

    # No key option: the stored key is kept.
    kept = run_ctl(target, "set", "POEM", "--provider", "GEMINI", "--model", "gemini-2.5-pro")
    assert kept.code == 0, kept.stderr
    assert "AIza-…0001" in kept.stdout


def test_the_key_comes_from_argv_only_when_asked_insecurely(token_server: ServerProcess) -> None:
    target = token_server.target
    refused = run_ctl(target, "set", "POEM", "--provider", "OPENAI", OPENAI_KEY_B)
    assert refused.code == 2  # a stray positional key is a usage error, never used
    loud = run_ctl(
        target,
        "set",
        "VOICE",
        "--provider",
        "SPEECHKIT",
        "--validate-only",
        "--api-key-insecure-argv",
        "AQVN-argv-key-000000000009",
    )
    assert loud.code == 0, loud.stderr
    assert "visible in the process list" in loud.stderr
    assert "nothing written" in loud.stdout
    assert "AQVN-argv-key-000000000009" not in loud.stdout


def test_errors_are_one_line_with_meaningful_exit_codes(token_server: ServerProcess) -> None:
    target = token_server.target
    assert (
        run_ctl(
            target, "set", "POEM", "--provider", "GEMINI", "--key-stdin", stdin=GEMINI_KEY_A
        ).code
        == 0
    )
    current = _revision(target, "POEM")

    bad_model = run_ctl(target, "set", "POEM", "--provider", "GEMINI", "--model", "gpt-9")
    assert bad_model.code == 1
    assert bad_model.stderr.count("\n") == 1
    assert bad_model.stderr.startswith("stageconfigctl: invalid argument model:")

    as_json = run_ctl(target, "--json", "set", "POEM", "--provider", "SUNO")
    assert as_json.code == 1
    error = json.loads(as_json.stderr)["error"]
    assert (error["code"], error["field"]) == ("INVALID_ARGUMENT", "provider_kind")

    stale = run_ctl(
        target, "set", "POEM", "--provider", "GEMINI", "--expected-revision", str(current - 1)
    )
    assert stale.code == 4
    assert f"at revision {current}" in stale.stderr
    stale_json = run_ctl(
        target,
        "set",
        "POEM",
        "--provider",
        "GEMINI",
        "--json",
        "--expected-revision",
        str(current - 1),
    )
    assert json.loads(stale_json.stderr)["error"]["current_revision"] == current
    assert _revision(target, "POEM") == current  # nothing written

    assert run_ctl(target, "get", "BANANA").code == 2
    assert run_ctl(target, "frobnicate").code == 2
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    down = run_ctl(dead, "status")
    assert down.code == 3
    assert down.stderr.startswith(f"stageconfigctl: cannot reach {dead}")


@needs_auth
def test_tokens_are_checked(token_server: ServerProcess) -> None:
    target = token_server.target
    anonymous = run_ctl(target, "status", token=None)
    assert anonymous.code == 5
    assert "not authenticated" in anonymous.stderr
    worker = run_ctl(target, "status", token=WORKER_TOKEN)
    assert worker.code == 5
    assert "not allowed" in worker.stderr
    assert run_ctl(target, "--token", ADMIN_TOKEN, "status", token=None).code == 0


def test_models_history_and_rollback(token_server: ServerProcess) -> None:
    target = token_server.target
    run_ctl(target, "set", "POEM", "--provider", "GEMINI", "--key-stdin", stdin=GEMINI_KEY_A)
    gemini_revision = _revision(target, "POEM")
    switched = run_ctl(
        target,
        "set",
        "POEM",
        "--provider",
        "OPENAI",
        "--key-stdin",
        "--model",
        "gpt-4o",
        stdin=OPENAI_KEY_B,
    )
    assert switched.code == 0, switched.stderr

    models = run_ctl(target, "models", "POEM", "--refresh")
    assert models.code == 0, models.stderr
    assert "* gpt-4o" in models.stdout.splitlines()
    assert "  gpt-4o-mini" in models.stdout.splitlines()
    assert json.loads(run_ctl(target, "models", "POEM", "--json").stdout)["selected_model"] == (
        "gpt-4o"
    )

    history = run_ctl(target, "history", "POEM", "--limit", "2")
    assert history.code == 0, history.stderr
    lines = history.stdout.splitlines()
    assert lines[0].split()[:4] == ["REV", "TIME", "STAGE", "REASON"]
    assert len(lines) == 3  # the header and --limit entries
    everything = json.loads(run_ctl(target, "history", "--limit", "0", "--json").stdout)
    assert len(everything) > 2
    assert [e["revision"] for e in everything] == sorted(
        (e["revision"] for e in everything), reverse=True
    )
    assert "ADMIN_UPDATE" in lines[1]
    assert ("admin" if AUTH_AVAILABLE else "anonymous") in lines[1]  # the token's name

    rolled = run_ctl(target, "rollback", "POEM", str(gemini_revision))
    assert rolled.code == 0, rolled.stderr
    assert "GEMINI" in rolled.stdout
    after = json.loads(run_ctl(target, "get", "POEM", "--json").stdout)
    assert after["config"]["provider_kind"] == "GEMINI"
    assert after["config"]["api_key"] == "AIza-…0001"
    newest = json.loads(run_ctl(target, "history", "POEM", "--limit", "1", "--json").stdout)
    assert newest[0]["reason"] == "ROLLBACK"
    assert OPENAI_KEY_B not in json.dumps(newest)

    missing = run_ctl(target, "rollback", "CLIP", str(gemini_revision))
    assert missing.code == 1
    assert missing.stderr.startswith("stageconfigctl: not found:")


def test_watch_streams_changes_and_watchers_lists_it(token_server: ServerProcess) -> None:
    target = token_server.target
    run_ctl(
        target,
        "set",
        "VOICE",
        "--provider",
        "SPEECHKIT",
        "--key-stdin",
        stdin="AQVN-voice-key-0000000000005",
    )

    # A deadline ends the stream normally.
    bounded = run_ctl(target, "watch", "VOICE", "--timeout", "1", "--heartbeats")
    assert bounded.code == 0, bounded.stderr
    assert " snapshot revision " in bounded.stdout.splitlines()[0]

    proc = subprocess.Popen(
        [*ctl_command("watch", "VOICE", "--client-id", "ctl-test"), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ctl_env(target),
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    try:
        snapshot = json.loads(lines.get(timeout=15))
        assert snapshot["event"] == "snapshot"
        assert snapshot["configs"][0]["api_key"] == "AQVN-…0005"

        deadline = time.monotonic() + 10
        while True:  # the stream registers as soon as the snapshot is sent
            watchers = run_ctl(target, "watchers")
            if "ctl-test" in watchers.stdout or time.monotonic() > deadline:
                break
        assert "ctl-test" in watchers.stdout
        assert watchers.stdout.splitlines()[0].split()[:3] == ["CLIENT", "ACTOR", "PEER"]

        changed = run_ctl(target, "set", "VOICE", "--provider", "SPEECHKIT", "--model", "jane")
        assert changed.code == 0, changed.stderr
        change = json.loads(lines.get(timeout=15))
        assert change["event"] == "change"
        assert change["config"]["model"] == "jane"
        assert change["reason"] == "ADMIN_UPDATE"
        assert change["config"]["api_key"] == "AQVN-…0005"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(15)
    assert code == 130
