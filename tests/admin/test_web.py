"""The admin page (``scripts/admin-web``) against a real server subprocess with tokens:
its session and CSRF rules over plain HTTP, and the whole flow in headless Chromium."""

from __future__ import annotations

import os
import re

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from stageconfig import AdminClient
from tests.admin.conftest import (
    ADMIN_TOKEN,
    GEMINI_KEY_A,
    WORKER_TOKEN,
    needs_auth,
)
from tests.admin.web_process import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    WebProcess,
    log_in_over_http,
)
from tests.support.servers import ServerProcess

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def poem_revision(token_server: ServerProcess) -> int:
    """POEM stored as GEMINI with key A and gemini-2.5-flash; its revision."""
    with AdminClient(token_server.target, token=ADMIN_TOKEN, timeout=15) as admin:
        saved = admin.update_config(
            "POEM", "GEMINI", api_key=GEMINI_KEY_A, model="gemini-2.5-flash"
        )
    return saved.config.revision


def _csrf(client: httpx.Client) -> str:
    page = client.get("/admin/providers")
    assert page.status_code == 200, page.text
    match = _CSRF.search(page.text)
    assert match is not None
    return match.group(1)


def test_login_sets_a_strict_httponly_session_and_rotates_it(web: WebProcess) -> None:
    with httpx.Client(base_url=web.url) as client:
        assert client.get("/admin/providers").headers["location"] == "/login"
        page = client.get("/login")
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        for header in ("content-security-policy", "x-frame-options", "cache-control"):
            assert header in page.headers
        before = client.cookies["stageconfig_session"]

        forged = client.post("/login", data={"token": ADMIN_TOKEN, "csrf_token": "forged"})
        assert forged.status_code == 403

        logged_in = log_in_over_http(client, ADMIN_TOKEN)
        assert (logged_in.status_code, logged_in.headers["location"]) == (303, "/admin/providers")
        assert client.cookies["stageconfig_session"] != before  # a fresh id after login
        page = client.get("/admin/providers")
        assert page.status_code == 200
        assert ADMIN_TOKEN not in page.text
        assert ADMIN_TOKEN not in client.cookies["stageconfig_session"]

    with httpx.Client(base_url=web.url, cookies={"stageconfig_session": before}) as old:
        # The pre-login id is worth nothing now.
        assert old.get("/admin/providers").headers["location"] == "/login"


@needs_auth
def test_only_admin_tokens_log_in(web: WebProcess) -> None:
    with httpx.Client(base_url=web.url) as client:
        wrong = log_in_over_http(client, "not-a-token-at-all-0000")
        assert wrong.status_code == 401
        assert "does not accept this token" in wrong.text
        worker = log_in_over_http(client, WORKER_TOKEN)
        assert worker.status_code == 401
        assert "admin token is needed" in worker.text
        assert client.get("/admin/providers").status_code == 303


def test_forms_need_this_sessions_csrf_token_and_show_field_errors(
    web: WebProcess, poem_revision: int, token_server: ServerProcess
) -> None:
    with httpx.Client(base_url=web.url) as alice, httpx.Client(base_url=web.url) as mallory:
        log_in_over_http(alice, ADMIN_TOKEN)
        log_in_over_http(mallory, ADMIN_TOKEN)
        form = {
            "stage_type": "POEM",
            "provider_kind": "GEMINI",
            "model": "gemini-2.5-pro",
            "expected_revision": str(poem_revision),
        }
        # Another session's token (what a cross-site form could at best carry) is refused.
        refused = alice.post("/admin/providers/update", data={**form, "csrf_token": _csrf(mallory)})
        assert refused.status_code == 403
        assert alice.post("/admin/providers/update", data=form).status_code == 403

        csrf = _csrf(alice)
        bad_model = alice.post(
            "/admin/providers/update", data={**form, "csrf_token": csrf, "model": "gemini-9"}
        )
        assert bad_model.status_code == 400
        error = re.search(r'data-field="model">([^<]+)<', bad_model.text)
        assert error is not None
        assert "gemini-9 is not offered by GEMINI" in error.group(1)

        not_allowed = alice.post(
            "/admin/providers/update",
            data={**form, "csrf_token": csrf, "provider_kind": "SUNO", "model": ""},
        )
        assert 'data-field="provider_kind"' in not_allowed.text

        new_key = "AIza-typed-in-the-form-0000007"
        saved = alice.post(
            "/admin/providers/update",
            data={**form, "csrf_token": csrf, "api_key": new_key},
        )
        assert saved.status_code == 303, saved.text
        page = alice.get("/admin/providers")
        assert new_key not in page.text
        assert "AIza-…0007" in page.text
        assert f"Saved: revision {poem_revision + 1}" in page.text

        refreshed = alice.post(
            "/admin/providers/refresh", data={"stage_type": "POEM", "csrf_token": csrf}
        )
        assert refreshed.status_code == 303
        assert "Models refreshed" in alice.get("/admin/providers").text

    with AdminClient(token_server.target, token=ADMIN_TOKEN) as admin:
        poem = admin.list_configs().stage("POEM")
    assert poem.revision == poem_revision + 1
    assert poem.config is not None
    assert poem.config.model == "gemini-2.5-pro"


def test_browser_saves_a_model_and_a_stale_form_gets_the_conflict(
    web: WebProcess, poem_revision: int, token_server: ServerProcess
) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(
            f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does it as root)"
        )

    def log_in(page: Page) -> None:
        page.goto(f"{web.url}/login")
        page.fill("#token", ADMIN_TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url("**/admin/providers")

    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=15_000)  # two shared cores: allow for a slow moment
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            alice = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            bob = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            log_in(alice)
            log_in(bob)  # bob's form now holds poem_revision too
            alice_poem, bob_poem = alice.locator("#stage-POEM"), bob.locator("#stage-POEM")
            expect(alice_poem.get_by_test_id("revision")).to_have_text(str(poem_revision))
            expect(alice_poem.get_by_test_id("masked-key")).to_have_text("AIza-…0001")

            alice.select_option("#POEM-model", "gemini-2.5-pro")
            alice_poem.get_by_role("button", name="Save POEM").click()
            alice.wait_for_url("**/admin/providers#stage-POEM")
            saved = poem_revision + 1
            expect(alice_poem.get_by_test_id("notice")).to_contain_text(
                f"Saved: revision {saved}, GEMINI gemini-2.5-pro, status ACTIVE"
            )
            expect(alice_poem.get_by_test_id("revision")).to_have_text(str(saved))
            expect(alice_poem.get_by_test_id("status")).to_have_text("ACTIVE")
            expect(alice.locator("#POEM-model")).to_have_value("gemini-2.5-pro")
            assert GEMINI_KEY_A not in alice.content()
            alice.screenshot(path=str(ARTIFACTS / "admin-web.png"), full_page=True)

            bob.select_option("#POEM-model", "gemini-2.5-flash")
            bob_poem.get_by_role("button", name="Save POEM").click()
            conflict = bob_poem.get_by_test_id("conflict")
            expect(conflict).to_contain_text(f"it is now at revision {saved}")
            expect(conflict).to_contain_text(f"your form was at revision {poem_revision}")
            # Bob now sees the current state, so a second save is a deliberate one.
            expect(bob_poem.get_by_test_id("revision")).to_have_text(str(saved))
            bob.screenshot(path=str(ARTIFACTS / "admin-web-conflict.png"), full_page=True)
        finally:
            browser.close()

    with AdminClient(token_server.target, token=ADMIN_TOKEN) as admin:
        poem = admin.list_configs().stage("POEM")
    assert poem.revision == saved  # bob's stale form did not overwrite
    assert poem.config is not None
    assert poem.config.model == "gemini-2.5-pro"
    assert (ARTIFACTS / "admin-web.png").stat().st_size > 10_000
