"""The web page's fleet section, in headless Chromium against a grpc server answering
GetFleetStatus with fixed data (``fleet_server``): per stage which revisions are live on
which clients, the NACKs with their reasons, the failure rate per revision, silent
clients shown as silent; what workers wrote is escaped (no markup, no control
character), the window is chosen strictly, the security headers stay, and the page fits
a 390 px phone.

Screenshots: ``artifacts/admin-web-fleet-fixed.png`` (desktop) and
``artifacts/admin-web-fleet-phone.png``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from stageconfig.ctl.fleet import printable
from tests.admin.fleet_server import EVIL_ID, EVIL_REASON, NACK_REASON, FleetServer
from tests.admin.recording_server import RecordingServer
from tests.admin.web_process import (
    ARTIFACTS,
    WebProcess,
    log_in_in_browser,
    log_in_over_http,
)

DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetServer]:
    with FleetServer() as server:
        yield server


@pytest.fixture(scope="module")
def web(fleet: FleetServer) -> Iterator[WebProcess]:
    process = WebProcess(fleet.target)
    try:
        yield process
    finally:
        process.stop()


def _fleet_page(browser: Browser, web: WebProcess, viewport: ViewportSize) -> Page:
    page = browser.new_context(viewport=viewport).new_page()
    log_in_in_browser(page, web.url, "")  # the fleet server checks no token
    page.get_by_test_id("fleet-link").click()
    page.wait_for_url("**/admin/fleet")
    return page


def test_the_fleet_section_shows_revisions_nacks_failures_and_silent_clients(
    web: WebProcess, fleet: FleetServer, browser: Browser
) -> None:
    page = _fleet_page(browser, web, DESKTOP)
    poem = page.locator("#fleet-POEM")
    newest, older, oldest = poem.get_by_test_id("revision").all()
    expect(newest).to_have_attribute("data-revision", "13")
    expect(newest).to_contain_text("current")
    expect(newest.get_by_test_id("clients")).to_have_text("3 clients")
    expect(newest.get_by_test_id("where")).to_have_text("on w-1, w-2, w-5")
    expect(newest.get_by_test_id("nack")).to_contain_text("NACK by 2")
    reasons = newest.get_by_test_id("nack-reason")
    expect(reasons.first).to_have_text(NACK_REASON)
    # Markup from a worker is text, its controls are escaped: no script, no forged line.
    expect(reasons.nth(1)).to_have_text(printable(EVIL_REASON))
    assert page.locator("script").count() == 0
    expect(newest.get_by_test_id("failure")).to_have_text("failure 40.0% (12/30)")
    expect(newest.get_by_test_id("failure")).to_have_class("failure failing")
    expect(newest.get_by_test_id("durations")).to_have_text("p50 1.2 s · p95 4.8 s")
    expect(newest.get_by_test_id("causes")).to_contain_text("TimeoutError 8, RateLimited 3")
    expect(older).to_contain_text("older")
    expect(older.get_by_test_id("where")).to_contain_text(printable(EVIL_ID, 48))
    expect(older.get_by_test_id("failure")).to_have_text("failure 0.0% (0/4)")
    expect(oldest.get_by_test_id("failure")).to_have_text("no task finished")

    voice = page.locator("#fleet-VOICE")
    expect(voice.get_by_test_id("silent-badge")).to_have_text("1 silent")
    expect(voice.get_by_test_id("silent")).to_contain_text("w-silent")
    expect(voice.get_by_test_id("revision").get_by_test_id("where")).to_have_text("on w-1")
    expect(page.locator("#fleet-SONG")).to_contain_text("No client reports this stage.")
    expect(page.get_by_test_id("fleet-summary")).to_contain_text("7 clients reported, 1 silent")

    rows = page.get_by_test_id("client")
    expect(rows).to_have_count(7)
    expect(rows.first).to_have_attribute("data-silent", "true")  # silent first
    expect(rows.first).to_contain_text("w-silent")
    expect(rows.first).to_contain_text("silent")
    expect(rows.first).not_to_contain_text("reporting")
    expect(page.locator('tr[data-silent="false"]')).to_have_count(6)
    w3 = rows.filter(has_text="w-3")
    expect(w3.get_by_test_id("client-nack")).to_have_text(f"POEM 13: {NACK_REASON}")
    html = page.content()
    assert "\x1b" not in html
    assert "\u202e" not in html
    assert "<b>bold</b>" not in html
    page.screenshot(path=str(ARTIFACTS / "admin-web-fleet-fixed.png"), full_page=True)

    page.select_option("#window", "1h")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**/admin/fleet?window=1h")
    expect(page.locator("#window")).to_have_value("1h")
    assert fleet.fleet_requests[-1].window_seconds == 3600


def test_the_fleet_section_fits_a_390_px_phone(web: WebProcess, browser: Browser) -> None:
    phone = _fleet_page(browser, web, PHONE)
    expect(phone.locator("#fleet-POEM")).to_be_visible()
    scroll_width, inner_width = phone.evaluate(
        "() => [document.scrollingElement.scrollWidth, window.innerWidth]"
    )
    assert inner_width == PHONE["width"]
    assert scroll_width <= inner_width, f"{scroll_width} px of content in {inner_width} px"
    for card in phone.locator(".card").all():
        box = card.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= inner_width
    expect(phone.get_by_role("button", name="Log out")).to_be_in_viewport(ratio=1)
    phone.screenshot(path=str(ARTIFACTS / "admin-web-fleet-phone.png"), full_page=True)


def test_a_bad_window_is_refused_and_the_headers_stay(web: WebProcess, fleet: FleetServer) -> None:
    with httpx.Client(base_url=web.url) as client:
        assert client.get("/admin/fleet").headers["location"] == "/login"  # logged out
        log_in_over_http(client, "")
        before = len(fleet.fleet_requests)
        for window in ("15", "0m", "<script>", "1h30m"):
            refused = client.get("/admin/fleet", params={"window": window})
            assert refused.status_code == 400
            assert "invalid window" in refused.text
            assert "<script>" not in refused.text
        assert len(fleet.fleet_requests) == before  # nothing was asked
        page = client.get("/admin/fleet", params={"window": "90s"})
        assert page.status_code == 200
        for header in ("content-security-policy", "x-frame-options", "cache-control"):
            assert header in page.headers
        assert fleet.fleet_requests[-1].window_seconds == 90


def test_an_older_server_gets_a_page_that_says_so() -> None:
    with RecordingServer() as older:  # answers GetFleetStatus UNIMPLEMENTED
        process = WebProcess(older.target)
        try:
            with httpx.Client(base_url=process.url) as client:
                log_in_over_http(client, "")
                page = client.get("/admin/fleet")
        finally:
            process.stop()
    assert page.status_code == 501
    assert "does not report fleet status yet" in page.text
    assert 'role="alert"' in page.text
