"""Route health in fleet truth (issue 16): workers report each route's breaker and
counts, GetFleetStatus sums them per stage and route, bad route reports are refused
with the field path, and the metrics show open breakers and failovers."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg
from tests.fakes.provider_server import FakeProviders
from tests.server.test_core_rpcs import bad_request_field
from tests.server.test_fallbacks import OPENAI_KEY, openai_route, poem_request
from tests.server.test_metrics import fleet_metrics, sample

Stub = pbg.StageConfigServiceStub
GEMINI_FP = "a1b2c3d4"
OPENAI_FP = "0f0f0f0f"


def routes(*, primary_open: bool, cause: int = pb.STATUS_CAUSE_QUOTA) -> list[pb.RouteReport]:
    """POEM's primary GEMINI (open or closed) and its OPENAI fallback (closed)."""
    return [
        pb.RouteReport(
            route_index=0,
            provider_kind=pb.PROVIDER_KIND_GEMINI,
            api_key_fingerprint=GEMINI_FP,
            breaker_state=pb.BREAKER_STATE_OPEN if primary_open else pb.BREAKER_STATE_CLOSED,
            failed=3 if primary_open else 0,
            failovers=3 if primary_open else 0,
            breaker_opened=1 if primary_open else 0,
            last_failure_cause=cause if primary_open else pb.STATUS_CAUSE_UNSPECIFIED,
        ),
        pb.RouteReport(
            route_index=1,
            provider_kind=pb.PROVIDER_KIND_OPENAI,
            api_key_fingerprint=OPENAI_FP,
            breaker_state=pb.BREAKER_STATE_CLOSED,
            succeeded=5,
        ),
    ]


def report(
    client_id: str, sequence: int, revision: int, route_reports: list[pb.RouteReport]
) -> pb.ReportStatusRequest:
    return pb.ReportStatusRequest(
        client_id=client_id,
        applied_revision=revision,
        host="worker-1",
        pid=4242,
        sequence=sequence,
        report_interval_seconds=30,
        stages=[
            pb.StageReport(stage_type=pb.STAGE_TYPE_POEM, revision=revision, routes=route_reports)
        ],
    )


async def poem_routes(stub: Stub) -> list[pb.RouteFleetStatus]:
    fleet = await stub.GetFleetStatus(pb.GetFleetStatusRequest(stage_type=pb.STAGE_TYPE_POEM))
    return list(fleet.stages[0].routes)


async def test_route_reports_add_up_per_stage_and_route(stub: Stub) -> None:
    revision = (await stub.UpdateConfig(poem_request())).config.revision
    for n in range(3):
        await stub.ReportStatus(report(f"w{n}", 1, revision, routes(primary_open=n < 2)))
    # A second report of w0 adds its counts to the first (same process, same route).
    await stub.ReportStatus(report("w0", 2, revision, routes(primary_open=True)))

    primary, fallback = await poem_routes(stub)
    assert (primary.route_index, primary.provider_kind) == (0, pb.PROVIDER_KIND_GEMINI)
    assert primary.api_key_fingerprint == GEMINI_FP
    assert (primary.clients, primary.clients_open) == (3, 2)
    assert (primary.failed, primary.failovers) == (9, 9)
    assert primary.failure_cause == pb.STATUS_CAUSE_QUOTA
    assert (fallback.route_index, fallback.provider_kind) == (1, pb.PROVIDER_KIND_OPENAI)
    assert (fallback.clients, fallback.clients_open, fallback.succeeded) == (3, 0, 20)

    # The client's own stage shows its routes (counts since its process began).
    fleet = await stub.GetFleetStatus(pb.GetFleetStatusRequest())
    w0 = next(c for c in fleet.clients if c.client_id == "w0")
    assert [r.failed for r in w0.stages[0].routes] == [6, 0]
    assert w0.stages[0].routes[0].breaker_state == pb.BREAKER_STATE_OPEN


async def test_unknown_enum_values_from_a_newer_worker_are_tolerated(stub: Stub) -> None:
    revision = (await stub.UpdateConfig(poem_request())).config.revision
    odd = [pb.RouteReport(route_index=0, provider_kind=77, breaker_state=9, last_failure_cause=55)]
    await stub.ReportStatus(report("newer", 1, revision, odd))
    (route,) = await poem_routes(stub)
    assert route.provider_kind == pb.PROVIDER_KIND_UNSPECIFIED
    assert (route.clients, route.clients_open) == (1, 0)


def _bad(**fields: object) -> list[pb.RouteReport]:
    return [pb.RouteReport(**fields)]  # type: ignore[arg-type]


BAD_ROUTE_REPORTS = [
    ([pb.RouteReport(route_index=i) for i in range(10)], "stages[0].routes"),
    (_bad(route_index=9), "stages[0].routes[0].route_index"),
    (_bad(route_index=-1), "stages[0].routes[0].route_index"),
    (
        [pb.RouteReport(route_index=1), pb.RouteReport(route_index=1)],
        "stages[0].routes[1].route_index",
    ),
    (
        _bad(route_index=0, api_key_fingerprint="0123456789abcdef0"),
        "stages[0].routes[0].api_key_fingerprint",
    ),
    (
        _bad(route_index=0, api_key_fingerprint="sk-secret"),
        "stages[0].routes[0].api_key_fingerprint",
    ),
    (_bad(route_index=0, failed=-1), "stages[0].routes[0].failed"),
    (_bad(route_index=0, failovers=2**60), "stages[0].routes[0].failovers"),
]


@pytest.mark.parametrize(("route_reports", "field"), BAD_ROUTE_REPORTS)
async def test_bad_route_reports_are_refused_naming_the_field(
    stub: Stub, route_reports: list[pb.RouteReport], field: str
) -> None:
    revision = (await stub.UpdateConfig(poem_request())).config.revision
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ReportStatus(report("bad", 1, revision, route_reports))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_field(caught.value) == field
    assert not (await stub.GetFleetStatus(pb.GetFleetStatusRequest())).clients


async def test_metrics_show_open_breakers_and_failovers_per_route(
    db_path: Path, fake_providers: FakeProviders
) -> None:

    async def two_open_breakers(stub: pbg.StageConfigServiceStub) -> None:
        revision = (await stub.UpdateConfig(poem_request())).config.revision
        await stub.ReportStatus(report("w0", 1, revision, routes(primary_open=True)))
        await stub.ReportStatus(report("w1", 1, revision, routes(primary_open=True)))

    text = await fleet_metrics(db_path, fake_providers, two_open_breakers)
    primary = {"stage": "POEM", "route_index": "0", "provider": "GEMINI"}
    fallback = {"stage": "POEM", "route_index": "1", "provider": "OPENAI"}
    assert sample(text, "stageconfig_fleet_route_clients_open", **primary) == 2
    assert sample(text, "stageconfig_fleet_route_clients_open", **fallback) == 0
    assert sample(text, "stageconfig_fleet_route_total", **primary, event="failovers") == 6
    assert sample(text, "stageconfig_fleet_route_total", **primary, event="breaker_opened") == 2


async def test_a_fallback_key_quoted_in_a_refusal_never_reaches_an_admin(stub: Stub) -> None:
    revision = (await stub.UpdateConfig(poem_request(openai_route()))).config.revision
    request = report("w-nack", 1, revision, [])
    request.stages[0].nack_revision = revision
    request.stages[0].nack_reason = f"validator: fallback key {OPENAI_KEY} looks wrong"
    await stub.ReportStatus(request)
    fleet = await stub.GetFleetStatus(pb.GetFleetStatusRequest())
    assert OPENAI_KEY not in str(fleet)
    assert "<redacted>" in fleet.clients[0].stages[0].nack_reason
