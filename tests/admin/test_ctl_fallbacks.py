"""Fallback routes in the admin tools (issue 16): ``AdminClient.update_config`` with
``RouteSpec``s, ``stageconfigctl set --fallback`` with keys from stdin, the routes in
``status`` and ``get``, and the route health line of ``fleet`` — against a real server
subprocess that checks tokens, with the fake providers."""

from __future__ import annotations

import json

import grpc
import pytest

from stageconfig import AdminClient, ProviderKind, StageType, StatusCause
from stageconfig._admin_routes import route_health_line
from stageconfig.admin import RouteHealth, RouteSpec
from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.admin.conftest import ADMIN_TOKEN, WORKER_TOKEN, run_ctl
from tests.support.servers import ServerProcess

POEM_KEY = "AIza-fallback-ctl-0000000000001"
OPENAI_KEY = "sk-fallback-ctl-openai-00000002"
YANDEX_KEY = "AQVN-fallback-ctl-yandex-000003"
VOICE_KEYS = ("AQVN-voice-ctl-a-00000004", "AQVN-voice-ctl-b-00000005")
KEYS = (POEM_KEY, OPENAI_KEY, YANDEX_KEY, *VOICE_KEYS)


def _clean(*outputs: str) -> None:
    for text in outputs:
        assert not [key for key in KEYS if key in text]


def test_ctl_sets_routes_with_keys_from_stdin_and_shows_them_masked(
    token_server: ServerProcess,
) -> None:
    target = token_server.target
    saved = run_ctl(
        target,
        "set",
        "POEM",
        "--provider",
        "gemini",
        "--model",
        "gemini-2.5-pro",
        "--key-stdin",
        "--fallback",
        "openai:gpt-4o-mini",
        "--fallback",
        "yandex_gpt:yandexgpt/latest,folder_id=b1gctl",
        "--fallback-keys-stdin",
        stdin=f"{POEM_KEY}\n{OPENAI_KEY}\n{YANDEX_KEY}\n",
    )
    assert saved.code == 0, saved.stderr
    status = run_ctl(target, "status")
    assert "POEM fallback 1: OPENAI gpt-4o-mini ACTIVE" in status.stdout
    assert "POEM fallback 2: YANDEX_GPT yandexgpt/latest ACTIVE" in status.stdout
    got = run_ctl(target, "get", "POEM")
    assert "fallback 2" in got.stdout
    assert "folder_id=b1gctl" in got.stdout
    as_json = json.loads(run_ctl(target, "get", "POEM", "--json").stdout)
    assert [r["model"] for r in as_json["routes"]] == ["gpt-4o-mini", "yandexgpt/latest"]
    _clean(saved.stdout, saved.stderr, status.stdout, got.stdout, json.dumps(as_json))

    # Reorder by fingerprint, keys kept; then clear.
    fps = [r["api_key_fingerprint"] for r in as_json["routes"]]
    swapped = run_ctl(
        target,
        "set",
        "POEM",
        "--provider",
        "gemini",
        "--fallback",
        f"yandex_gpt@{fps[1]}",
        "--fallback",
        f"openai:gpt-4o@{fps[0]}",
    )
    assert swapped.code == 0, swapped.stderr
    routes = json.loads(run_ctl(target, "get", "POEM", "--json").stdout)["routes"]
    assert [(r["provider_kind"], r["api_key_fingerprint"]) for r in routes] == [
        ("YANDEX_GPT", fps[1]),
        ("OPENAI", fps[0]),
    ]
    cleared = run_ctl(target, "set", "POEM", "--provider", "gemini", "--clear-fallbacks")
    assert cleared.code == 0, cleared.stderr
    assert json.loads(run_ctl(target, "get", "POEM", "--json").stdout)["routes"] == []


def test_bad_fallback_flags_are_usage_errors_or_name_the_field(token_server: ServerProcess) -> None:
    target = token_server.target
    unknown = run_ctl(target, "set", "POEM", "--provider", "gemini", "--fallback", "nope")
    assert unknown.code == 2
    both = run_ctl(
        target, "set", "POEM", "--provider", "gemini", "--fallback", "openai", "--clear-fallbacks"
    )
    assert both.code == 2
    refused = run_ctl(target, "set", "SONG", "--provider", "suno", "--fallback", "openai", "--json")
    assert refused.code == 1
    assert json.loads(refused.stderr)["error"]["field"] == "fallbacks[0].provider_kind"


def test_admin_client_sets_a_voice_key_pool(token_server: ServerProcess) -> None:
    with AdminClient(token_server.target, token=ADMIN_TOKEN, timeout=20) as admin:
        result = admin.update_config(
            StageType.VOICE,
            ProviderKind.SPEECHKIT,
            api_key=VOICE_KEYS[0],
            model="jane:good",
            fallbacks=[RouteSpec(ProviderKind.SPEECHKIT, VOICE_KEYS[1], "jane:good")],
        )
        assert [r.provider for r in result.routes] == ["SPEECHKIT"]
        view = admin.list_configs().stage(StageType.VOICE)
        assert view.routes[0].api_key_fingerprint == result.routes[0].api_key_fingerprint
        assert view.routes[0].api_key != VOICE_KEYS[1]
        assert "AQVN" not in repr(RouteSpec("SPEECHKIT", VOICE_KEYS[1]))
        _clean(repr(result), repr(view))


async def _report(target: str, clients: int, revision: int) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pbg.StageConfigServiceStub(channel)
        for n in range(clients):
            routes = [
                pb.RouteReport(
                    route_index=0,
                    provider_kind=pb.PROVIDER_KIND_GEMINI,
                    breaker_state=pb.BREAKER_STATE_OPEN,
                    failed=4,
                    failovers=4,
                    last_failure_cause=pb.STATUS_CAUSE_QUOTA,
                ),
                pb.RouteReport(
                    route_index=1,
                    provider_kind=pb.PROVIDER_KIND_OPENAI,
                    breaker_state=pb.BREAKER_STATE_CLOSED,
                    succeeded=4,
                ),
            ]
            await stub.ReportStatus(
                pb.ReportStatusRequest(
                    client_id=f"route-worker-{n}",
                    host="h",
                    pid=n + 1,
                    sequence=1,
                    applied_revision=revision,
                    stages=[
                        pb.StageReport(
                            stage_type=pb.STAGE_TYPE_POEM, revision=revision, routes=routes
                        )
                    ],
                ),
                metadata=(("authorization", f"Bearer {WORKER_TOKEN}"),),
            )


async def test_fleet_prints_the_route_health_line(token_server: ServerProcess) -> None:
    target = token_server.target
    with AdminClient(target, token=ADMIN_TOKEN, timeout=20) as admin:
        revision = admin.update_config(
            StageType.POEM, ProviderKind.GEMINI, api_key=POEM_KEY, model="gemini-2.5-pro"
        ).config.revision
    await _report(target, 3, revision)
    fleet = run_ctl(target, "fleet", "POEM")
    assert fleet.code == 0, fleet.stderr
    assert (
        "POEM: primary GEMINI failing (QUOTA) on 3/3 workers, serving from OPENAI" in fleet.stdout
    )
    with AdminClient(target, token=ADMIN_TOKEN, timeout=20) as admin:
        stage = admin.fleet_status(StageType.POEM).stages[0]
    assert stage.routes[0].clients_open == 3
    assert stage.routes[0].failure_cause is StatusCause.QUOTA


def _health(index: int, provider: ProviderKind, clients: int, open_: int) -> RouteHealth:
    return RouteHealth(index, provider, f"fp{index}", clients, open_, 0, 0, 0, StatusCause.QUOTA)


@pytest.mark.parametrize(
    ("routes", "line"),
    [
        ([], ""),
        (
            [_health(0, ProviderKind.GEMINI, 4, 0), _health(1, ProviderKind.OPENAI, 4, 0)],
            "POEM: all 2 routes healthy",
        ),
        (
            [_health(0, ProviderKind.GEMINI, 4, 4), _health(1, ProviderKind.OPENAI, 4, 4)],
            "POEM: primary GEMINI failing (QUOTA) on 4/4 workers, no fallback route left",
        ),
        (
            [_health(0, ProviderKind.SPEECHKIT, 2, 1), _health(1, ProviderKind.SPEECHKIT, 2, 0)],
            "POEM: primary SPEECHKIT failing (QUOTA) on 1/2 workers, "
            "serving from SPEECHKIT key fp1",
        ),
        (
            [_health(0, ProviderKind.GEMINI, 4, 0), _health(1, ProviderKind.OPENAI, 4, 2)],
            "POEM: primary healthy; OPENAI failing (QUOTA) on 2/4 workers",
        ),
    ],
)
def test_the_route_health_line(routes: list[RouteHealth], line: str) -> None:
    assert route_health_line("POEM", routes) == line
