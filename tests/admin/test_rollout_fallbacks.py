"""A rollout's candidate with its own fallback routes from every admin tool:
``AdminClient.start_rollout(fallbacks=...)``, ``stageconfigctl rollout start
--fallback … --fallback-keys-stdin`` / ``--clear-fallbacks`` and the web form's routes
box with "roll out to a cohort first" — against a real server subprocess that checks
tokens, the fake providers, and a real ConfigClient in the cohort that gets the
candidate's routes with their keys while every admin view shows them masked."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from stageconfig import AdminClient, ConfigClient, ProviderKind, StageType
from stageconfig.admin import RouteSpec
from tests.admin.conftest import ADMIN_TOKEN, needs_auth, run_ctl, watching_worker
from tests.admin.web_process import WebProcess, log_in_over_http
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

pytestmark = needs_auth

POEM_KEY = "AIza-rollout-routes-000000000001"
STABLE_OPENAI_KEY = "sk-rollout-routes-stable-0000002"
CANDIDATE_OPENAI_KEY = "sk-rollout-routes-cand-00000003"
YANDEX_KEY = "AQVN-rollout-routes-yandex-0004"
KEYS = (POEM_KEY, STABLE_OPENAI_KEY, CANDIDATE_OPENAI_KEY, YANDEX_KEY)
CANARY = "canary-routes-1"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _clean(*outputs: str) -> None:
    for text in outputs:
        assert not [key for key in KEYS if key in text]


def _route_keys(client: ConfigClient) -> list[str]:
    return [route.api_key for route in client.get(StageType.POEM).fallbacks]


@pytest.fixture(scope="module")
def canary(token_server: ServerProcess) -> Iterator[ConfigClient]:
    """POEM with one stable OpenAI route, and a worker watching as ``CANARY``."""
    with AdminClient(token_server.target, token=ADMIN_TOKEN, timeout=20) as admin:
        admin.update_config(
            "POEM",
            "GEMINI",
            api_key=POEM_KEY,
            model="gemini-2.5-pro",
            fallbacks=[RouteSpec(ProviderKind.OPENAI, STABLE_OPENAI_KEY, "gpt-4o-mini")],
        )
    with watching_worker(token_server.target, CANARY) as client:
        yield client


@pytest.fixture
def admin(token_server: ServerProcess, canary: ConfigClient) -> Iterator[AdminClient]:
    """An admin client; whatever rollout a test leaves running is aborted."""
    with AdminClient(token_server.target, token=ADMIN_TOKEN, timeout=20) as client:
        yield client
        if client.list_configs().stage("POEM").rollout is not None:
            client.abort_rollout("POEM", comment="test cleanup")
        wait_for(lambda: _route_keys(canary) == [STABLE_OPENAI_KEY], 10, "the stable route")


def test_admin_client_starts_a_rollout_with_its_own_routes(
    admin: AdminClient, canary: ConfigClient
) -> None:
    rollout = admin.start_rollout(
        "POEM",
        client_ids=[CANARY],
        fallbacks=[
            RouteSpec(ProviderKind.YANDEX_GPT, YANDEX_KEY, options={"folder_id": "b1groutes"}),
            RouteSpec(ProviderKind.OPENAI, CANDIDATE_OPENAI_KEY, "gpt-4o"),
        ],
    )
    assert rollout.candidate is not None
    candidate_routes = rollout.candidate.fallbacks
    assert [(r.provider_kind, r.model) for r in candidate_routes] == [
        (ProviderKind.YANDEX_GPT, "yandexgpt/latest"),
        (ProviderKind.OPENAI, "gpt-4o"),
    ]
    assert all(r.api_key_masked for r in candidate_routes)
    # The cohort's worker gets the candidate's routes with their keys.
    wait_for(
        lambda: _route_keys(canary) == [YANDEX_KEY, CANDIDATE_OPENAI_KEY], 10, "candidate routes"
    )
    view = admin.list_configs().stage("POEM")
    assert [r.model for r in view.routes] == ["gpt-4o-mini"]  # the stable side's
    assert view.rollout is not None
    assert view.rollout.candidate is not None
    assert [r.model for r in view.rollout.candidate.fallbacks] == ["yandexgpt/latest", "gpt-4o"]
    _clean(repr(rollout), repr(view))

    ended = admin.abort_rollout("POEM")
    assert [r.model for r in ended.config.fallbacks] == ["gpt-4o-mini"]
    wait_for(lambda: _route_keys(canary) == [STABLE_OPENAI_KEY], 10, "back to the stable route")


def test_ctl_rollout_start_takes_fallback_flags_and_keys_from_stdin(
    token_server: ServerProcess, admin: AdminClient, canary: ConfigClient
) -> None:
    target = token_server.target
    started = run_ctl(
        target,
        "rollout",
        "start",
        "POEM",
        "--client-id",
        CANARY,
        "--fallback",
        "openai:gpt-4o",
        "--fallback-keys-stdin",
        stdin=f"{CANDIDATE_OPENAI_KEY}\n",
    )
    assert started.code == 0, started.stderr
    assert "fallback 1" in started.stdout
    assert "OPENAI gpt-4o key" in started.stdout
    wait_for(lambda: _route_keys(canary) == [CANDIDATE_OPENAI_KEY], 10, "the candidate route")
    as_json = json.loads(run_ctl(target, "rollout", "status", "POEM", "--json").stdout)
    routes = as_json["POEM"]["candidate"]["fallbacks"]
    assert [r["model"] for r in routes] == ["gpt-4o"]
    assert all(r["api_key_masked"] for r in routes)
    promoted = run_ctl(target, "rollout", "promote", "POEM")
    assert promoted.code == 0, promoted.stderr
    assert [r.model for r in admin.list_configs().stage("POEM").routes] == ["gpt-4o"]
    _clean(started.stdout, started.stderr, json.dumps(as_json), promoted.stdout)

    # Back to the stable route for the next tests; then a rollout clearing every route.
    admin.update_config(
        "POEM",
        "GEMINI",
        fallbacks=[RouteSpec(ProviderKind.OPENAI, STABLE_OPENAI_KEY, "gpt-4o-mini")],
    )
    wait_for(lambda: _route_keys(canary) == [STABLE_OPENAI_KEY], 10, "the stable route")
    cleared = run_ctl(
        target, "rollout", "start", "POEM", "--client-id", CANARY, "--clear-fallbacks"
    )
    assert cleared.code == 0, cleared.stderr
    wait_for(lambda: _route_keys(canary) == [], 10, "the candidate without routes")
    assert [r.model for r in admin.list_configs().stage("POEM").routes] == ["gpt-4o-mini"]
    both = run_ctl(target, "rollout", "start", "POEM", "--percent", "10", "--fallback", "x")
    assert both.code == 2


def test_the_web_form_starts_a_rollout_with_the_routes_box(
    token_server: ServerProcess, admin: AdminClient, canary: ConfigClient
) -> None:
    web = WebProcess(token_server.target)
    try:
        revision = admin.list_configs().stage("POEM").revision
        with httpx.Client(base_url=web.url, timeout=30) as http:
            log_in_over_http(http, ADMIN_TOKEN)
            match = _CSRF.search(http.get("/admin/providers").text)
            assert match is not None
            started = http.post(
                "/admin/providers/update",
                data={
                    "csrf_token": match.group(1),
                    "stage_type": "POEM",
                    "provider_kind": "GEMINI",
                    "model": "gemini-2.5-pro",
                    "expected_revision": str(revision),
                    "had_fallbacks": "1",
                    "fallbacks": "OPENAI:gpt-4o\n",
                    "fallback_keys": CANDIDATE_OPENAI_KEY,
                    "rollout_client_ids": CANARY,
                },
            )
            assert started.status_code == 303, started.text
            page = http.get("/admin/providers").text
            _clean(started.text, page)
        wait_for(lambda: _route_keys(canary) == [CANDIDATE_OPENAI_KEY], 10, "candidate route")
        rollout = admin.list_configs().stage("POEM").rollout
        assert rollout is not None
        assert rollout.candidate is not None
        assert [r.model for r in rollout.candidate.fallbacks] == ["gpt-4o"]
        assert [r.model for r in admin.list_configs().stage("POEM").routes] == ["gpt-4o-mini"]
    finally:
        web.stop()
