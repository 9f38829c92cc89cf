"""Rollouts on the admin page (``scripts/admin-web``) against a real server subprocess with
tokens and a real ConfigClient watching: the stage form starts one, the stage shows it
(candidate, cohort, clients and outcomes per side) with Promote and Abort forms that
need the session's CSRF token and the candidate's revision, and the whole flow in
headless Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect

from stageconfig import AdminClient, ConfigClient, StageType
from tests.admin.conftest import (
    ADMIN_TOKEN,
    GEMINI_KEY_A,
    needs_auth,
    watching_worker,
)
from tests.admin.web_process import ARTIFACTS, WebProcess, log_in_in_browser, log_in_over_http
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

pytestmark = needs_auth

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def canary(token_server: ServerProcess) -> Iterator[ConfigClient]:
    """A worker watching as ``canary-1`` (the explicit cohorts name it)."""
    with AdminClient(token_server.target, token=ADMIN_TOKEN, timeout=15) as admin:
        admin.update_config("POEM", "GEMINI", api_key=GEMINI_KEY_A, model="gemini-2.5-flash")
    with watching_worker(token_server.target, "canary-1") as client:
        yield client


@pytest.fixture
def admin(token_server: ServerProcess, canary: ConfigClient) -> Iterator[AdminClient]:
    with AdminClient(token_server.target, token=ADMIN_TOKEN, timeout=15) as client:
        assert client.list_configs().stage("POEM").rollout is None
        yield client
        if client.list_configs().stage("POEM").rollout is not None:
            client.abort_rollout("POEM", comment="test cleanup")


def _csrf(client: httpx.Client) -> str:
    match = _CSRF.search(client.get("/admin/providers").text)
    assert match is not None
    return match.group(1)


def _poem_section(html: str) -> str:
    return html.split('id="stage-POEM"', 1)[1].split("</section>", 1)[0]


def test_the_stage_form_starts_a_rollout_and_the_stage_shows_it(
    web: WebProcess, admin: AdminClient, canary: ConfigClient
) -> None:
    revision = admin.list_configs().stage("POEM").revision
    hostile = "<script>alert(1)</script>"
    with httpx.Client(base_url=web.url) as http:
        log_in_over_http(http, ADMIN_TOKEN)
        form = {
            "csrf_token": _csrf(http),
            "stage_type": "POEM",
            "provider_kind": "GEMINI",
            "model": "gemini-2.5-pro",
            "expected_revision": str(revision),
        }
        typed_key = "AIza-typed-for-a-rollout-00000009"
        both = http.post(
            "/admin/providers/update",
            data={
                **form,
                "api_key": typed_key,
                "rollout_percent": "10",
                "rollout_client_ids": "canary-1",
            },
        )
        assert both.status_code == 400
        assert typed_key not in both.text  # never rendered back, as on a plain save
        assert "exactly one of them" in both.text
        assert 'value="canary-1"' in both.text  # the inputs are shown again
        half = http.post(
            "/admin/providers/update",
            data={**form, "rollout_percent": "10", "bake_seconds": "60"},
        )
        assert half.status_code == 400
        assert "needs all three" in half.text
        out_of_range = http.post("/admin/providers/update", data={**form, "rollout_percent": "100"})
        assert out_of_range.status_code == 400  # the server's INVALID_ARGUMENT
        assert admin.list_configs().stage("POEM").rollout is None

        started = http.post(
            "/admin/providers/update",
            data={**form, "rollout_client_ids": f"canary-1, {hostile}", "comment": "web"},
        )
        assert started.status_code == 303, started.text
        wait_for(
            lambda: canary.get(StageType.POEM).model == "gemini-2.5-pro",
            10,
            "the canary on the candidate",
        )
        rollout = admin.list_configs().stage("POEM").rollout
        assert rollout is not None
        assert rollout.client_ids == ("canary-1", hostile)
        page = http.get("/admin/providers").text
        assert f"Rollout started: revision {rollout.candidate_revision}" in page
        section = _poem_section(page)
        assert 'data-testid="rollout"' in section
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section
        assert hostile not in page
        assert "AIza-…0001" in section
        assert GEMINI_KEY_A not in page
        assert 'action="/admin/providers/update"' not in section  # no Save while it runs

        def canary_counted() -> bool:
            text = _poem_section(http.get("/admin/providers").text)
            row = re.search(r'data-testid="rollout-canary">(.*?)</tr>', text, re.S)
            return row is not None and "1 client," in row.group(1)

        wait_for(canary_counted, 10, "the canary side counting canary-1")
        fleet = http.get("/admin/fleet").text
        assert 'data-testid="fleet-rollout"' in fleet
        assert f"candidate revision {rollout.candidate_revision} (gemini-2.5-pro)" in fleet
        assert hostile not in fleet

        # A form loaded before the rollout started: refused for the stage, not the key.
        late = http.post("/admin/providers/update", data={**form, "csrf_token": _csrf(http)})
        assert late.status_code == 409
        assert "has a rollout running" in _poem_section(late.text)
        assert 'data-field="api_key"' not in _poem_section(late.text)

        promote = {
            "stage_type": "POEM",
            "expected_revision": str(rollout.candidate_revision),
        }
        forged = http.post("/admin/providers/rollout/promote", data={**promote, "csrf_token": "x"})
        assert forged.status_code == 403
        assert admin.list_configs().stage("POEM").rollout is not None
        stale = http.post(
            "/admin/providers/rollout/promote",
            data={**promote, "expected_revision": "99999", "csrf_token": _csrf(http)},
        )
        assert stale.status_code == 303
        assert "is no longer the one running" in http.get("/admin/providers").text
        assert admin.list_configs().stage("POEM").rollout is not None

        done = http.post(
            "/admin/providers/rollout/promote", data={**promote, "csrf_token": _csrf(http)}
        )
        assert done.status_code == 303
        assert "Promoted: revision" in http.get("/admin/providers").text
    assert admin.list_configs().stage("POEM").rollout is None
    (entry,) = admin.history("POEM", page_size=1).entries
    assert entry.reason.value == "ROLLOUT_PROMOTED"


def test_browser_starts_an_automatic_rollout_and_aborts_it(
    web: WebProcess, admin: AdminClient, canary: ConfigClient, browser: Browser
) -> None:
    stable = admin.list_configs().stage("POEM")
    assert stable.config is not None
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in_in_browser(page, web.url, ADMIN_TOKEN)
    poem = page.locator("#stage-POEM")
    other = "gemini-2.5-flash" if stable.config.model != "gemini-2.5-flash" else "gemini-2.5-pro"
    page.select_option("#POEM-model", other)
    poem.locator("summary").click()
    page.fill("#POEM-rollout-client-ids", "canary-1")
    page.fill("#POEM-bake-seconds", "3600")
    page.fill("#POEM-min-tasks", "500")
    page.fill("#POEM-max-increase", "0.05")
    poem.get_by_role("button", name="Save POEM").click()
    page.wait_for_url("**/admin/providers#stage-POEM")
    expect(poem.get_by_test_id("notice")).to_contain_text("Rollout started")
    expect(poem.get_by_test_id("rollout-cohort")).to_have_text("1 client: canary-1")
    expect(poem.get_by_test_id("rollout-policy")).to_contain_text("after 3600 s and 500")
    expect(poem.get_by_test_id("rollout-candidate")).to_contain_text(other)
    page.screenshot(path=str(ARTIFACTS / "admin-web-rollout.png"), full_page=True)

    poem.get_by_test_id("abort").click()
    page.wait_for_url("**/admin/providers#stage-POEM")
    expect(poem.get_by_test_id("notice")).to_contain_text("Aborted: revision")
    expect(poem.get_by_test_id("rollout")).to_have_count(0)
    wait_for(
        lambda: canary.get(StageType.POEM).model == stable.config.model,  # type: ignore[union-attr]
        10,
        "the canary back on the stable config",
    )
