"""Fallback routes reach the worker and go back to the server in its status reports: a
real grpc server on port 0 (the recording server) sends a POEM config with fallbacks —
one of them of a provider kind this client does not know, which is dropped with one
warning — and the client's reports carry each route's breaker and counts since the
previous report, never a key."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from stageconfig import (
    BreakerState,
    ConfigClient,
    ProviderKind,
    StageConfig,
    StageType,
    TimingOptions,
)
from stageconfig.providers import BreakerSettings, ProviderFactory
from stageconfig_contract.v1 import stage_config_pb2 as pb
from tests.client.newer_server import UNKNOWN, change, config, serve, snapshot
from tests.client.report_recorder import ReportRecorder
from tests.client.test_client import wait_until
from tests.fakes.provider_server import FakeProviders

PRIMARY_KEY = "AIza-report-primary-key-31"
FALLBACK_KEY = "sk-report-fallback-key-32"


def poem_with_fallbacks(revision: int) -> pb.StageConfig:
    message = config(pb.STAGE_TYPE_POEM, pb.PROVIDER_KIND_GEMINI, revision, "gemini-2.5-flash")
    message.api_key = PRIMARY_KEY
    message.api_key_fingerprint = "aa11"
    message.fallbacks.add(
        provider_kind=UNKNOWN,  # type: ignore[arg-type]  # a kind from the future
        api_key="future-key",
        model="future-model",
    )
    message.fallbacks.add(
        provider_kind=pb.PROVIDER_KIND_OPENAI,
        api_key=FALLBACK_KEY,
        model="gpt-4o-mini",
        api_key_fingerprint="bb22",
        status=pb.CONFIG_STATUS_ACTIVE,
    )
    return message


@pytest.fixture
def recorder() -> Iterator[tuple[ReportRecorder, str]]:
    servicer = ReportRecorder(snapshot(5, poem_with_fallbacks(5)))
    server, target = serve(servicer)
    try:
        yield servicer, target
    finally:
        server.stop(0)


def routes_reported(servicer: ReportRecorder) -> dict[int, list[pb.RouteReport]]:
    by_index: dict[int, list[pb.RouteReport]] = {}
    for report in servicer.counted():
        for route in servicer.stage(report, pb.STAGE_TYPE_POEM).routes:
            by_index.setdefault(route.route_index, []).append(route)
    return by_index


def test_routes_are_received_and_reported_per_report(
    recorder: tuple[ReportRecorder, str],
    fake_providers: FakeProviders,
    caplog: pytest.LogCaptureFixture,
) -> None:
    servicer, target = recorder
    caplog.set_level(logging.WARNING)
    timing = TimingOptions(report_interval_seconds=0.3)
    with ConfigClient(target, stages=[StageType.POEM], timing=timing) as client:
        client.wait_ready(10)
        poem = client.get(StageType.POEM)
        # The unknown kind's route is dropped; the known one keeps its number (2).
        (fallback,) = poem.fallbacks
        assert (fallback.provider_kind, fallback.model) == (ProviderKind.OPENAI, "gpt-4o-mini")
        assert fallback.index == 2
        assert fallback.api_key == FALLBACK_KEY
        assert FALLBACK_KEY not in repr(poem) + repr(fallback)
        warnings = [r for r in caplog.records if "fallbacks[0]" in r.getMessage()]
        assert len(warnings) == 1

        fake_providers.set_failure(ProviderKind.GEMINI, "quota")
        poet = ProviderFactory.text_generator(
            poem,
            env=fake_providers.env(),
            breaker_settings=BreakerSettings(failure_threshold=2, base_cooldown_seconds=60),
        )
        for _ in range(5):
            assert "gpt-4o-mini" in poet.generate("x")
        wait_until(
            lambda: sum(r.failovers for r in routes_reported(servicer).get(0, [])) == 5,
            5,
            "the failovers reported",
        )
        for _ in range(2):
            assert "gpt-4o-mini" in poet.generate("x")
        wait_until(
            lambda: sum(r.succeeded for r in routes_reported(servicer).get(2, [])) == 7,
            5,
            "the later calls reported",
        )
        # A re-sent config (a new revision) changes nothing of the breakers' identity.
        servicer.send(change(6, poem_with_fallbacks(6)))
        wait_until(lambda: client.get(StageType.POEM).revision == 6, 5, "revision 6")
    by_index = routes_reported(servicer)
    assert set(by_index) == {0, 2}
    primary, fallback_reports = by_index[0], by_index[2]
    # Each report carries what happened since the previous one: the sums are the totals.
    assert sum(r.failed for r in primary) == 2
    assert sum(r.failovers for r in primary) == 7
    assert sum(r.breaker_opened for r in primary) == 1
    assert sum(r.succeeded for r in fallback_reports) == 7
    last = primary[-1]
    assert last.provider_kind == pb.PROVIDER_KIND_GEMINI
    assert last.api_key_fingerprint == "aa11"
    assert last.breaker_state == BreakerState.OPEN.number
    assert last.last_failure_cause == pb.STATUS_CAUSE_QUOTA
    assert fallback_reports[-1].api_key_fingerprint == "bb22"
    assert fallback_reports[-1].breaker_state == BreakerState.CLOSED.number
    wire = b"".join(r.request.SerializeToString() for r in servicer.received)
    for key in (PRIMARY_KEY, FALLBACK_KEY):
        assert key.encode() not in wire
        assert key not in caplog.text


def test_a_refusal_quoting_a_fallback_key_reaches_the_server_masked(
    recorder: tuple[ReportRecorder, str],
) -> None:
    servicer, target = recorder

    def refuse_quoting_keys(config: StageConfig) -> None:
        if config.revision == 7:
            keys = ", ".join(r.api_key for r in config.routes())
            raise ValueError(f"not on this worker (keys {keys})")

    with ConfigClient(target, stages=[StageType.POEM]) as client:
        client.add_validator(refuse_quoting_keys)
        client.wait_ready(10)
        servicer.send(change(7, poem_with_fallbacks(7)))
        wait_until(
            lambda: any(
                servicer.stage(r, pb.STAGE_TYPE_POEM).nack_revision == 7 for r in servicer.reports()
            ),
            5,
            "the refusal reported",
        )
    reasons = [servicer.stage(r, pb.STAGE_TYPE_POEM).nack_reason for r in servicer.reports()]
    reason = next(r for r in reasons if r)
    assert reason.startswith("not on this worker (keys ")
    for key in (PRIMARY_KEY, FALLBACK_KEY):
        assert key not in reason
        assert key[-4:] in reason  # masked, not dropped
