"""Fallback routes on the web page (issue 16), over HTTP against the real page process
and a real server subprocess with tokens: the stage form sets, keeps, reorders and clears
routes, shows them masked, names bad lines and refused fields, and the fleet page shows
the route health line; and once in headless Chromium (screenshot:
``artifacts/admin-web-fallbacks.png``)."""

from __future__ import annotations

import html
import re

import httpx
from playwright.sync_api import Browser, expect

from stageconfig import AdminClient
from tests.admin.conftest import ADMIN_TOKEN
from tests.admin.test_ctl_fallbacks import _report
from tests.admin.web_process import ARTIFACTS, WebProcess, log_in_in_browser, log_in_over_http
from tests.support.servers import ServerProcess

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
POEM_KEY = "AIza-web-fallback-000000000001"
OPENAI_KEY = "sk-web-fallback-openai-0000002"


def _poem_section(page: str) -> str:
    start = page.index('id="stage-POEM"')
    return page[start : page.index("</section>", start)]


def _textarea(section: str) -> str:
    match = re.search(r'name="fallbacks"[^>]*>([^<]*)</textarea>', section)
    assert match is not None
    return html.unescape(match.group(1))


def test_the_stage_form_sets_keeps_and_clears_fallback_routes(
    web: WebProcess, token_server: ServerProcess
) -> None:
    with AdminClient(token_server.target, token=ADMIN_TOKEN, timeout=15) as admin:
        revision = admin.update_config(
            "POEM", "GEMINI", api_key=POEM_KEY, model="gemini-2.5-pro", clear_fallbacks=True
        ).config.revision
    with httpx.Client(base_url=web.url, timeout=30) as client:
        log_in_over_http(client, ADMIN_TOKEN)
        page = client.get("/admin/providers").text
        match = _CSRF.search(page)
        assert match is not None
        form = {
            "csrf_token": match.group(1),
            "stage_type": "POEM",
            "provider_kind": "GEMINI",
            "model": "gemini-2.5-pro",
            "expected_revision": str(revision),
            "had_fallbacks": "0",
        }
        saved = client.post(
            "/admin/providers/update",
            data={**form, "fallbacks": "OPENAI:gpt-4o-mini\n", "fallback_keys": OPENAI_KEY},
        )
        assert saved.status_code == 303, saved.text
        section = _poem_section(client.get("/admin/providers").text)
        assert 'data-testid="route"' in section
        assert "gpt-4o-mini" in section
        assert OPENAI_KEY not in section
        shown = _textarea(section)
        assert re.fullmatch(r"OPENAI:gpt-4o-mini@[0-9a-f]+", shown), shown

        # Sent back as shown, with no key: the route keeps its key, nothing changes.
        again = {**form, "expected_revision": str(revision + 1), "had_fallbacks": "1"}
        kept = client.post("/admin/providers/update", data={**again, "fallbacks": shown})
        assert kept.status_code == 303, kept.text
        assert "Nothing to save" in client.get("/admin/providers").text

        malformed = client.post(
            "/admin/providers/update", data={**again, "fallbacks": "NOPE:model"}
        )
        assert malformed.status_code == 400
        assert 'data-field="fallbacks"' in malformed.text
        assert "fallback route 1: unknown provider" in html.unescape(malformed.text)

        refused = client.post("/admin/providers/update", data={**again, "fallbacks": "SUNO:V5"})
        assert refused.status_code == 400
        assert "fallbacks[0].provider_kind" in refused.text

        cleared = client.post("/admin/providers/update", data={**again, "fallbacks": ""})
        assert cleared.status_code == 303, cleared.text
        assert 'data-testid="route"' not in _poem_section(client.get("/admin/providers").text)
    with AdminClient(token_server.target, token=ADMIN_TOKEN, timeout=15) as admin:
        assert admin.list_configs().stage("POEM").routes == ()


async def test_the_fleet_page_shows_the_route_health_line(
    web: WebProcess, token_server: ServerProcess
) -> None:
    with AdminClient(token_server.target, token=ADMIN_TOKEN, timeout=15) as admin:
        revision = admin.update_config("POEM", "GEMINI", api_key=POEM_KEY).config.revision
    await _report(token_server.target, 2, revision)
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as client:
        login = await client.get("/login")
        match = _CSRF.search(login.text)
        assert match is not None
        await client.post("/login", data={"token": ADMIN_TOKEN, "csrf_token": match.group(1)})
        page = (await client.get("/admin/fleet")).text
    line = re.search(r'data-testid="route-health">([^<]+)<', page)
    assert line is not None
    assert html.unescape(line.group(1)).startswith("POEM: primary GEMINI failing (QUOTA) on ")
    assert "serving from OPENAI" in line.group(1)


def test_a_browser_sets_a_route_and_sees_it_masked(
    web: WebProcess, token_server: ServerProcess, browser: Browser
) -> None:
    with AdminClient(token_server.target, token=ADMIN_TOKEN, timeout=15) as admin:
        admin.update_config("POEM", "GEMINI", api_key=POEM_KEY, clear_fallbacks=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    try:
        log_in_in_browser(page, web.url, ADMIN_TOKEN)
        card = page.locator("#stage-POEM")
        keys = card.locator("textarea[name=fallback_keys]")
        # What is typed into the keys box is drawn as dots, like a password field.
        assert keys.evaluate("e => getComputedStyle(e).webkitTextSecurity") == "disc"
        card.locator("textarea[name=fallbacks]").fill("OPENAI:gpt-4o-mini")
        keys.fill(OPENAI_KEY)
        card.get_by_role("button", name="Save POEM").click()
        page.wait_for_url("**/admin/providers*")
        route = page.locator("#stage-POEM").get_by_test_id("route")
        expect(route).to_contain_text("OPENAI gpt-4o-mini")
        expect(route).to_contain_text("sk-…0002")
        assert OPENAI_KEY not in page.content()
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#stage-POEM").screenshot(path=str(ARTIFACTS / "admin-web-fallbacks.png"))
    finally:
        page.close()
