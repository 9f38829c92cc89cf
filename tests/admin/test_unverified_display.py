"""UNVERIFIED as the admin tools show it, against a real server subprocess and the real
FakeProviders server: stageconfigctl's status and its refusal of an unverifiable key
(stored with ``--allow-unverified``), and the web page's badge — not the green of ACTIVE.

Screenshot: ``artifacts/admin-web-unverified.png``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from stageconfig_server.providers.speechkit import UNVERIFIED_REASON
from tests.admin.conftest import run_ctl, start_server
from tests.admin.web_process import ARTIFACTS, WebProcess, chromium, log_in_in_browser
from tests.fakes.provider_server import FakeProviders
from tests.support.servers import ServerProcess

MASTER_KEY = "sk-litellm-master-0000000000000001"
TYPO_KEY = "sk-litellm-mastre-0000000000000001"
VOICE_KEY = "AQVN-speechkit-000000000000000003"


@pytest.fixture
def dev_server(tmp_path: Path, fake_providers: FakeProviders) -> Iterator[ServerProcess]:
    """A server without tokens (the admin tools need none) and the providers reset."""
    server = start_server(tmp_path / "stageconfig.db", fake_providers)
    try:
        yield server
    finally:
        server.stop()


def _stage_row(status_output: str, stage: str) -> str:
    return next(row for row in status_output.splitlines() if row.startswith(stage))


def test_ctl_shows_unverified_and_refuses_an_unverifiable_key_without_the_flag(
    dev_server: ServerProcess, fake_providers: FakeProviders
) -> None:
    target = dev_server.target
    voice = run_ctl(target, "set", "VOICE", "--provider", "SPEECHKIT", "--key-stdin",
                    token=None, stdin=VOICE_KEY + "\n")  # fmt: skip
    assert voice.code == 0, voice.stderr
    assert "UNVERIFIED" in voice.stdout
    status = run_ctl(target, "status", token=None)
    assert "UNVERIFIED" in _stage_row(status.stdout, "VOICE")
    as_json = json.loads(run_ctl(target, "--json", "get", "VOICE", token=None).stdout)
    assert as_json["config"]["status"] == "UNVERIFIED"
    assert as_json["config"]["status_reason"] == UNVERIFIED_REASON

    working = run_ctl(target, "set", "POEM", "--provider", "OPENAI", "--model", "gpt-4o",
                      "--key-stdin", token=None, stdin=MASTER_KEY + "\n")  # fmt: skip
    assert working.code == 0, working.stderr
    fake_providers.fail_key(TYPO_KEY, "no_connected_db")
    refused = run_ctl(target, "set", "POEM", "--provider", "OPENAI", "--key-stdin",
                      token=None, stdin=TYPO_KEY + "\n")  # fmt: skip
    assert refused.code == 1
    assert refused.stderr.count("\n") == 1  # one line, no traceback
    assert "No connected db" in refused.stderr
    assert "set allow_unverified to store the key anyway" in refused.stderr
    assert "ACTIVE" in _stage_row(run_ctl(target, "status", token=None).stdout, "POEM")

    allowed = run_ctl(target, "set", "POEM", "--provider", "OPENAI", "--key-stdin",
                      "--allow-unverified", token=None, stdin=TYPO_KEY + "\n")  # fmt: skip
    assert allowed.code == 0, allowed.stderr
    assert "UNVERIFIED" in _stage_row(run_ctl(target, "status", token=None).stdout, "POEM")
    same = run_ctl(target, "set", "POEM", "--provider", "OPENAI", token=None)
    assert same.code == 0, same.stderr
    assert same.stdout.startswith("unchanged (identical to revision 3): ")
    for result in (voice, refused, allowed):
        assert TYPO_KEY not in result.stdout + result.stderr
        assert VOICE_KEY not in result.stdout + result.stderr


def test_the_web_badge_of_an_unverified_config_is_not_the_green_of_active(
    dev_server: ServerProcess,
) -> None:
    target = dev_server.target
    for args, key in (
        (("VOICE", "--provider", "SPEECHKIT"), VOICE_KEY),
        (("POEM", "--provider", "OPENAI", "--model", "gpt-4o"), MASTER_KEY),
    ):
        saved = run_ctl(target, "set", *args, "--key-stdin", token=None, stdin=key + "\n")
        assert saved.code == 0, saved.stderr
    web = WebProcess(target)
    try:
        with chromium() as browser:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            log_in_in_browser(page, web.url, "")
            voice, poem = page.locator("#stage-VOICE"), page.locator("#stage-POEM")
            expect(voice.get_by_test_id("status")).to_have_text("UNVERIFIED")
            expect(voice.get_by_test_id("reason")).to_have_text(UNVERIFIED_REASON)
            expect(poem.get_by_test_id("status")).to_have_text("ACTIVE")
            style = "el => { const s = getComputedStyle(el); return [s.backgroundColor, s.color]; }"
            unverified = voice.get_by_test_id("status").evaluate(style)
            active = poem.get_by_test_id("status").evaluate(style)
            plain = page.evaluate(
                "() => { const b = document.createElement('span'); b.className = 'badge';"
                " document.body.append(b); return getComputedStyle(b).backgroundColor; }"
            )
            assert unverified != active
            assert unverified[0] != plain  # styled as a status of its own, not left bare
            voice.screenshot(path=str(ARTIFACTS / "admin-web-unverified.png"))
    finally:
        web.stop()
