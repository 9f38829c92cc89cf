"""The admin page doing the whole job, in headless Chromium: a stage's history with masked
diffs and a rollback guarded by the revision check, a phone-width layout, provider names
as people write them, hints that fit the stage, a truthful model-list line, the login
form of a development server, and the "allow unverified key" box.

Screenshots go to ``artifacts/`` (admin-web-history.png, admin-web-rollback-conflict.png,
admin-web-phone.png, admin-web-phone-history.png, admin-web-dev-login.png,
admin-web-labels.png).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from stageconfig import AdminClient
from tests.admin.conftest import (
    ADMIN_TOKEN,
    AUTH_AVAILABLE,
    GEMINI_KEY_A,
    OPENAI_KEY_B,
    needs_auth,
)
from tests.admin.recording_server import POEM_REVISION, RecordingServer
from tests.admin.web_process import (
    ARTIFACTS,
    WebProcess,
    log_in_in_browser,
    log_in_over_http,
)
from tests.support.servers import ServerProcess

DESKTOP: ViewportSize = {"width": 1280, "height": 900}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PHONE: ViewportSize = {"width": 390, "height": 844}


def _page(browser: Browser, viewport: ViewportSize = DESKTOP) -> Page:
    return browser.new_context(viewport=viewport).new_page()


def test_history_shows_masked_diffs_and_rolls_back_with_the_revision_check(
    web: WebProcess, token_server: ServerProcess, browser: Browser
) -> None:
    with AdminClient(token_server.target, token=ADMIN_TOKEN, timeout=15) as admin:
        first = admin.update_config(
            "POEM", "GEMINI", api_key=GEMINI_KEY_A, model="gemini-2.5-flash", comment="start"
        ).config.revision
        second = admin.update_config(
            "POEM", "OPENAI", api_key=OPENAI_KEY_B, model="gpt-4o", comment="move to OpenAI"
        ).config.revision
    alice, bob = _page(browser), _page(browser)
    log_in_in_browser(alice, web.url, ADMIN_TOKEN)
    log_in_in_browser(bob, web.url, ADMIN_TOKEN)
    alice.locator("#stage-POEM").get_by_test_id("history-link").click()
    alice.wait_for_url("**/admin/providers/POEM/history")
    bob.goto(f"{web.url}/admin/providers/POEM/history")  # bob's page is at `second` too

    newest = alice.get_by_test_id("entry").first
    expect(newest).to_have_attribute("data-revision", str(second))
    expect(newest.get_by_test_id("reason")).to_have_text("ADMIN_UPDATE")
    expect(newest.get_by_test_id("actor")).to_have_text("admin" if AUTH_AVAILABLE else "anonymous")
    expect(newest.get_by_test_id("comment")).to_have_text("move to OpenAI")
    changes = newest.get_by_test_id("changes")
    expect(changes).to_contain_text("Gemini")  # the diff names providers as people do
    expect(changes).to_contain_text("OpenAI")
    expect(changes).to_contain_text("gpt-4o")
    expect(changes).to_contain_text("Key")
    expect(changes).to_contain_text("fingerprint")  # keys only by fingerprint
    expect(newest.get_by_role("button")).to_have_count(0)  # no rollback to where it is
    for page in (alice, bob):
        assert GEMINI_KEY_A not in page.content()
        assert OPENAI_KEY_B not in page.content()

    alice.get_by_role("button", name=f"Roll back to revision {first}").click()
    alice.wait_for_url("**/admin/providers/POEM/history")
    restored = second + 1
    expect(alice.get_by_test_id("notice")).to_contain_text(
        f"Rolled back: revision {first} restored as revision {restored}, "
        "GEMINI gemini-2.5-flash, status ACTIVE"
    )
    newest = alice.get_by_test_id("entry").first
    expect(newest).to_have_attribute("data-revision", str(restored))
    expect(newest.get_by_test_id("reason")).to_have_text("ROLLBACK")
    expect(alice.get_by_test_id("current").get_by_test_id("masked-key")).to_have_text("AIza-…0001")
    assert GEMINI_KEY_A not in alice.content()
    alice.screenshot(path=str(ARTIFACTS / "admin-web-history.png"), full_page=True)

    # Bob's page still says `second`: his rollback is refused, not applied over alice's.
    bob.get_by_role("button", name=f"Roll back to revision {first}").click()
    conflict = bob.get_by_test_id("conflict")
    expect(conflict).to_contain_text(f"it is now at revision {restored}")
    expect(conflict).to_contain_text(f"your page was at revision {second}")
    expect(conflict).to_have_class("banner conflict")  # the providers page's banner style
    expect(bob.get_by_test_id("current").get_by_test_id("revision")).to_have_text(str(restored))
    bob.screenshot(path=str(ARTIFACTS / "admin-web-rollback-conflict.png"), full_page=True)

    with AdminClient(token_server.target, token=ADMIN_TOKEN) as admin:
        poem = admin.list_configs().stage("POEM")
    assert poem.revision == restored  # bob's stale rollback wrote nothing
    assert poem.config is not None
    assert (poem.config.provider_kind.value, poem.config.model) == ("GEMINI", "gemini-2.5-flash")


def _assert_fits_a_phone(page: Page) -> None:
    scroll_width, inner_width = page.evaluate(
        "() => [document.scrollingElement.scrollWidth, window.innerWidth]"
    )
    assert inner_width == PHONE["width"]
    assert scroll_width <= inner_width, f"{scroll_width} px of content in {inner_width} px"
    log_out = page.get_by_role("button", name="Log out")
    expect(log_out).to_be_visible()
    expect(log_out).to_be_in_viewport(ratio=1)
    for card in page.locator(".card").all():
        box = card.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= inner_width


def test_the_page_fits_a_390_px_phone(web: WebProcess, browser: Browser) -> None:
    phone = _page(browser, PHONE)
    log_in_in_browser(phone, web.url, ADMIN_TOKEN)
    expect(phone.locator("#stage-POEM")).to_be_visible()
    _assert_fits_a_phone(phone)
    phone.screenshot(path=str(ARTIFACTS / "admin-web-phone.png"), full_page=True)

    phone.goto(f"{web.url}/admin/providers/POEM/history")
    expect(phone.get_by_test_id("entry").first).to_be_visible()
    _assert_fits_a_phone(phone)
    phone.screenshot(path=str(ARTIFACTS / "admin-web-phone-history.png"), full_page=True)


def test_rollback_needs_this_sessions_csrf_token_and_the_page_keeps_its_headers(
    web: WebProcess, token_server: ServerProcess
) -> None:
    with AdminClient(token_server.target, token=ADMIN_TOKEN, timeout=15) as admin:
        saved = admin.update_config("POEM", "GEMINI", api_key=GEMINI_KEY_A, model="gemini-2.5-pro")
    current = saved.config.revision
    with httpx.Client(base_url=web.url) as alice, httpx.Client(base_url=web.url) as mallory:
        log_in_over_http(alice, ADMIN_TOKEN)
        log_in_over_http(mallory, ADMIN_TOKEN)
        page = alice.get("/admin/providers/POEM/history")
        assert page.status_code == 200
        for header in ("content-security-policy", "x-frame-options", "cache-control"):
            assert header in page.headers
        assert GEMINI_KEY_A not in page.text
        form = {"stage_type": "POEM", "to_revision": "1", "expected_revision": str(current)}
        theirs = _CSRF.search(mallory.get("/admin/providers/POEM/history").text)
        assert theirs is not None
        refused = alice.post("/admin/providers/rollback", data={**form, "csrf_token": theirs[1]})
        assert refused.status_code == 403
        assert alice.post("/admin/providers/rollback", data=form).status_code == 403
        assert alice.get("/admin/providers/BANANA/history").status_code == 404
    with AdminClient(token_server.target, token=ADMIN_TOKEN) as admin:
        assert admin.list_configs().stage("POEM").revision == current  # nothing rolled back


@needs_auth
def test_a_server_with_tokens_asks_for_one(web: WebProcess) -> None:
    with httpx.Client(base_url=web.url) as client:
        login = client.get("/login").text
    assert "no-token-needed" not in login
    assert "Use an admin token" in login


@pytest.fixture(scope="module")
def recording() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


@pytest.fixture(scope="module")
def open_web(recording: RecordingServer) -> Iterator[WebProcess]:
    process = WebProcess(recording.target)
    try:
        yield process
    finally:
        process.stop()


def test_a_development_server_form_speaks_plainly_and_sends_allow_unverified(
    open_web: WebProcess, recording: RecordingServer, browser: Browser
) -> None:
    page = _page(browser)
    page.goto(f"{open_web.url}/login")
    expect(page.get_by_test_id("no-token-needed")).to_contain_text("no token is needed")
    page.screenshot(path=str(ARTIFACTS / "admin-web-dev-login.png"), full_page=True)
    log_in_in_browser(page, open_web.url, "")  # the empty field logs in

    poem_provider = page.locator("#POEM-provider option")
    expect(poem_provider).to_have_text(["Yandex GPT", "Gemini", "OpenAI"])
    assert [o.get_attribute("value") for o in poem_provider.all()] == [
        "YANDEX_GPT",
        "GEMINI",
        "OPENAI",
    ]
    expect(page.locator("#VOICE-provider option")).to_have_text(["Yandex SpeechKit"])
    expect(page.locator("label[for=POEM-folder_id]")).to_contain_text("(Yandex GPT, required)")

    poem, voice = page.locator("#stage-POEM"), page.locator("#stage-VOICE")
    song = page.locator("#stage-SONG")
    expect(poem.get_by_test_id("model-list")).to_have_text(
        "2 models, fetched 2 h ago. Switching provider? Leave the model on automatic."
    )
    # VOICE has one provider and a saved model but no fetched list: no switching hint,
    # no "0 models cached, fetched never" beside its model.
    expect(voice.get_by_test_id("model-list")).to_have_text(
        "Model list not fetched yet; the saved model alena is used as it is."
    )
    expect(song.get_by_test_id("model-list")).to_have_text(
        "The model list is fetched when a key is saved."
    )
    assert "Switching provider" not in voice.inner_text() + song.inner_text()
    expect(song.locator("#SONG-allow-unverified")).to_have_count(0)  # nothing to displace

    before = len(recording.updates)
    page.check("#POEM-allow-unverified")
    poem.get_by_role("button", name="Save POEM").click()
    page.wait_for_url("**/admin/providers#stage-POEM")
    expect(poem.get_by_test_id("notice")).to_contain_text(f"Saved: revision {POEM_REVISION + 1}")
    expect(page.locator("#POEM-allow-unverified")).not_to_be_checked()  # each save asks anew
    page.screenshot(path=str(ARTIFACTS / "admin-web-labels.png"), full_page=True)
    poem.get_by_role("button", name="Save POEM").click()
    page.wait_for_url("**/admin/providers#stage-POEM")
    expect(poem.get_by_test_id("notice")).to_be_visible()

    sent = recording.updates[before:]
    assert [u.allow_unverified for u in sent] == [True, False]
    assert [u.expected_revision for u in sent] == [POEM_REVISION, POEM_REVISION]
