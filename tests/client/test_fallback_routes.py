"""Fallback routes and key pools in the worker, against real local HTTP servers speaking
each provider's wire format (FakeProviders), with the real SDKs:

- a primary failing with the route's fault (quota, 5xx, timeout, rejected key) is
  served by the next route, without an exception; the caller's own error (a model the
  provider does not offer: 404) is raised at once and no other route is tried;
- after the threshold the breaker opens and the dead primary is not called any more;
  after the cooldown one call tries it (half-open) and, when it answers, calls return
  to it; a 429 with Retry-After opens the breaker for that long at once;
- every route failing gives one AllRoutesFailed naming each route's failure, with no key
  and no provider exception chained to it;
- a SpeechKit key pool moves to the second key when the first is out of credits;
- the classification of failures, and Retry-After parsing, on real exception objects.
"""

from __future__ import annotations

import logging
import time
import traceback
from types import MappingProxyType

import httpx
import pytest

from stageconfig import (
    BreakerState,
    ConfigSource,
    ConfigStatus,
    ProviderKind,
    StageConfig,
    StageType,
    StatusCause,
)
from stageconfig._route_failures import MAX_RETRY_AFTER_SECONDS, classify, parse_retry_after
from stageconfig._types import Route
from stageconfig.errors import AllRoutesFailed
from stageconfig.providers import (
    BreakerRegistry,
    BreakerSettings,
    ProviderFactory,
    SpeechKitClient,
    run_with_fallback,
)
from tests.client.test_client import free_port, wait_until
from tests.fakes.provider_server import FakeProviders

PRIMARY_KEY = "AIza-primary-secret-0001"
FALLBACK_KEY = "sk-fallback-secret-0002"
FAST = BreakerSettings(failure_threshold=3, base_cooldown_seconds=0.5, max_cooldown_seconds=2)
SLOW = BreakerSettings(failure_threshold=3, base_cooldown_seconds=60)
"""Open for longer than any test: calls after the opening never reach the route."""


def route(kind: ProviderKind, model: str, key: str) -> Route:
    return Route(kind, key, model, status=ConfigStatus.ACTIVE, api_key_fingerprint=key[-4:])


def stage_config(
    kind: ProviderKind, model: str, key: str, *fallbacks: Route, stage: StageType = StageType.POEM
) -> StageConfig:
    return StageConfig(
        stage_type=stage,
        provider_kind=kind,
        api_key=key,
        model=model,
        revision=3,
        status=ConfigStatus.ACTIVE,
        source=ConfigSource.DATABASE,
        options=MappingProxyType({}),
        api_key_fingerprint=key[-4:],
        fallbacks=fallbacks,
    )


def gemini_then_openai() -> StageConfig:
    return stage_config(
        ProviderKind.GEMINI,
        "gemini-2.5-flash",
        PRIMARY_KEY,
        route(ProviderKind.OPENAI, "gpt-4o-mini", FALLBACK_KEY),
    )


def no_key_in(text: str) -> None:
    for key in (PRIMARY_KEY, FALLBACK_KEY):
        assert key not in text


def test_a_quota_failing_primary_is_served_by_the_fallback_then_skipped(
    fake_providers: FakeProviders, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake_providers.set_failure(ProviderKind.GEMINI, "quota")
    breakers = BreakerRegistry()
    poet = ProviderFactory.text_generator(
        gemini_then_openai(), env=fake_providers.env(), breaker_settings=SLOW, breakers=breakers
    )
    for _ in range(10):
        assert poet.generate("the sea").startswith("A poem by gpt-4o-mini:")
    # Three failures opened the breaker: the seven calls after them never touched Gemini.
    assert fake_providers.count(ProviderKind.GEMINI) == 3
    assert fake_providers.count(ProviderKind.OPENAI) == 10
    config = gemini_then_openai()
    assert breakers.state(StageType.POEM, config.primary) is BreakerState.OPEN
    primary, fallback = breakers.drain(StageType.POEM, config.routes())
    assert (primary.route_index, primary.provider_kind) == (0, ProviderKind.GEMINI)
    assert (primary.succeeded, primary.failed, primary.failovers) == (0, 3, 10)
    assert primary.breaker_opened == 1
    assert primary.last_failure_cause is StatusCause.QUOTA
    assert primary.api_key_fingerprint == PRIMARY_KEY[-4:]
    assert (fallback.route_index, fallback.succeeded, fallback.failed) == (1, 10, 0)
    # Drained: the next report starts from zero, the state stays.
    again = breakers.drain(StageType.POEM, config.routes())
    assert [(r.succeeded, r.failed, r.failovers) for r in again] == [(0, 0, 0), (0, 0, 0)]
    assert again[0].breaker_state is BreakerState.OPEN
    assert "POEM primary GEMINI failed (QUOTA (429)); trying fallback 1 OPENAI" in caplog.text
    assert "breaker open" in caplog.text
    no_key_in(caplog.text)


def test_the_primary_gets_calls_back_after_the_cooldown(fake_providers: FakeProviders) -> None:
    fake_providers.set_failure(ProviderKind.GEMINI, "server_error")
    breakers = BreakerRegistry()
    poet = ProviderFactory.text_generator(
        gemini_then_openai(), env=fake_providers.env(), breaker_settings=FAST, breakers=breakers
    )
    for _ in range(4):
        assert "gpt-4o-mini" in poet.generate("x")
    assert fake_providers.count(ProviderKind.GEMINI) == 3
    fake_providers.set_failure(ProviderKind.GEMINI, None)  # the primary recovers
    # Within the cooldown (0.5 s) calls stay on the fallback; after it one call tries
    # the primary, which answers, and calls are back on it.
    wait_until(lambda: "gemini-2.5-flash" in poet.generate("x"), 5, "back on the primary")
    assert fake_providers.count(ProviderKind.GEMINI) == 4
    assert breakers.state(StageType.POEM, gemini_then_openai().primary) is BreakerState.CLOSED
    for _ in range(3):
        assert "gemini-2.5-flash" in poet.generate("x")


def test_a_failed_trial_reopens_for_longer(fake_providers: FakeProviders) -> None:
    fake_providers.set_failure(ProviderKind.GEMINI, "server_error")
    breakers = BreakerRegistry()
    settings = BreakerSettings(failure_threshold=1, base_cooldown_seconds=0.2)
    poet = ProviderFactory.text_generator(
        gemini_then_openai(),
        env=fake_providers.env(),
        breaker_settings=settings,
        breakers=breakers,
    )
    poet.generate("x")  # opens for 0.2 s
    assert fake_providers.count(ProviderKind.GEMINI) == 1

    def tried_again() -> bool:
        poet.generate("x")
        return fake_providers.count(ProviderKind.GEMINI) == 2

    wait_until(tried_again, 5, "the half-open trial")
    # The trial failed: open again (for 0.4 s now); the next call skips Gemini.
    poet.generate("x")
    assert fake_providers.count(ProviderKind.GEMINI) == 2
    (primary, _) = breakers.drain(StageType.POEM, gemini_then_openai().routes())
    assert primary.breaker_opened == 2
    assert primary.breaker_state is BreakerState.OPEN


def test_retry_after_opens_the_breaker_for_that_long(fake_providers: FakeProviders) -> None:
    fake_providers.set_failure(ProviderKind.OPENAI, "rate_limit")
    fake_providers.set_retry_after(ProviderKind.OPENAI, "1")
    config = stage_config(
        ProviderKind.OPENAI,
        "gpt-4o",
        FALLBACK_KEY,
        route(ProviderKind.GEMINI, "gemini-2.5-pro", PRIMARY_KEY),
    )
    breakers = BreakerRegistry()
    poet = ProviderFactory.text_generator(
        config, env=fake_providers.env(), breaker_settings=FAST, breakers=breakers
    )
    started = time.monotonic()
    assert "gemini-2.5-pro" in poet.generate("x")  # one 429 with Retry-After: open at once
    assert breakers.state(StageType.POEM, config.primary) is BreakerState.OPEN
    fake_providers.set_failure(ProviderKind.OPENAI, None)
    wait_until(lambda: "gpt-4o" in poet.generate("x"), 5, "back after Retry-After")
    assert 1.0 <= time.monotonic() - started < 3.0
    assert fake_providers.count(ProviderKind.OPENAI) == 2


def test_a_hanging_primary_costs_one_timeout_per_call_until_the_breaker_opens(
    fake_providers: FakeProviders,
) -> None:
    fake_providers.set_failure(ProviderKind.GEMINI, "hang")
    breakers = BreakerRegistry()
    poet = ProviderFactory.text_generator(
        gemini_then_openai(),
        env=fake_providers.env(),
        timeout_seconds=0.5,
        breaker_settings=SLOW,
        breakers=breakers,
    )
    for _ in range(3):
        assert "gpt-4o-mini" in poet.generate("x")  # each waits out the 0.5 s timeout once
    started = time.monotonic()
    for _ in range(5):
        assert "gpt-4o-mini" in poet.generate("x")
    assert time.monotonic() - started < 0.5  # no call waited on the dead primary
    # One request per failed call: the SDK did not retry on its own.
    assert fake_providers.count(ProviderKind.GEMINI) == 3
    (primary, _) = breakers.drain(StageType.POEM, gemini_then_openai().routes())
    assert primary.last_failure_cause is StatusCause.NETWORK


def test_the_callers_own_error_is_raised_at_once(fake_providers: FakeProviders) -> None:
    import openai

    config = stage_config(
        ProviderKind.OPENAI,
        "gpt-9",  # not offered: the provider's 404
        FALLBACK_KEY,
        route(ProviderKind.GEMINI, "gemini-2.5-pro", PRIMARY_KEY),
    )
    poet = ProviderFactory.text_generator(
        config, env=fake_providers.env(), breakers=BreakerRegistry()
    )
    with pytest.raises(openai.NotFoundError):
        poet.generate("x")
    assert fake_providers.count(ProviderKind.GEMINI) == 0


def test_every_route_failing_is_one_error_naming_each_without_keys(
    fake_providers: FakeProviders,
) -> None:
    fake_providers.set_failure(ProviderKind.GEMINI, "quota")
    fake_providers.reject_key(FALLBACK_KEY)  # OpenAI's 401 body echoes the key
    poet = ProviderFactory.text_generator(
        gemini_then_openai(), env=fake_providers.env(), breakers=BreakerRegistry()
    )
    with pytest.raises(AllRoutesFailed) as caught:
        poet.generate("x")
    error = caught.value
    assert str(error) == (
        "every route of POEM failed: primary GEMINI: QUOTA (429); fallback 1 OPENAI: AUTH (401)"
    )
    assert error.__cause__ is None
    assert error.__context__ is None
    no_key_in("".join(traceback.format_exception(error)) + repr(error.failures))


def test_open_breakers_fail_fast_naming_the_cause(fake_providers: FakeProviders) -> None:
    fake_providers.set_failure(ProviderKind.GEMINI, "quota")
    config = stage_config(ProviderKind.GEMINI, "gemini-2.5-flash", PRIMARY_KEY)
    breakers = BreakerRegistry()
    poet = ProviderFactory.text_generator(
        config, env=fake_providers.env(), breaker_settings=SLOW, breakers=breakers
    )
    for _ in range(3):
        with pytest.raises(AllRoutesFailed, match=r"primary GEMINI: QUOTA \(429\)$"):
            poet.generate("x")
    with pytest.raises(AllRoutesFailed, match=r"primary GEMINI: QUOTA \(breaker open\)$"):
        poet.generate("x")
    assert fake_providers.count(ProviderKind.GEMINI) == 3


def test_a_speechkit_key_pool_moves_to_the_next_key(fake_providers: FakeProviders) -> None:
    first, second = "AQVN-first-key-0001", "AQVN-second-key-0002"
    fake_providers.fail_key(first, "quota")
    config = stage_config(
        ProviderKind.SPEECHKIT,
        "alena:good",
        first,
        route(ProviderKind.SPEECHKIT, "alena:good", second),
        stage=StageType.VOICE,
    )
    voice = ProviderFactory.create(config, env=fake_providers.env(), breakers=BreakerRegistry())
    assert isinstance(voice, SpeechKitClient)
    assert voice.synthesize("Hello") == b"MP3 alena: Hello"
    used = [r.header("authorization") for r in fake_providers.requests]
    assert used == [f"Api-Key {first}", f"Api-Key {second}"]


def test_run_with_fallback_with_any_call() -> None:
    config = gemini_then_openai()
    seen: list[str] = []

    def call(r: Route) -> str:
        seen.append(r.provider_kind.value)
        if r.provider_kind is ProviderKind.GEMINI:
            raise TimeoutError("read timed out")
        return r.model

    assert run_with_fallback(config, call, breakers=BreakerRegistry()) == "gpt-4o-mini"
    assert seen == ["GEMINI", "OPENAI"]
    with pytest.raises(KeyError):  # not a provider's failure: raised, not failed over
        run_with_fallback(config, lambda r: {}["x"], breakers=BreakerRegistry())


def _status_error(status: int, body: str, headers: dict[str, str] | None = None) -> Exception:
    request = httpx.Request("POST", "http://127.0.0.1/x")
    response = httpx.Response(status, text=body, headers=headers, request=request)
    return httpx.HTTPStatusError("failed", request=request, response=response)


@pytest.mark.parametrize(
    ("status", "body", "cause"),
    [
        (401, "Unauthorized", StatusCause.AUTH),
        (400, '{"error": {"details": [{"reason": "API_KEY_INVALID"}]}}', StatusCause.AUTH),
        (402, "Payment required", StatusCause.QUOTA),
        (429, '{"code": 429, "msg": "Insufficient credits"}', StatusCause.QUOTA),
        (429, "Rate limit reached for requests", StatusCause.RATE_LIMIT),
        (403, "User is locked. Reason: Exhausted balance.", StatusCause.QUOTA),
        (403, "Country, region, or territory not supported", StatusCause.REGION),
        (403, "Missing scopes", StatusCause.PERMISSION),
        (500, "boom", StatusCause.UPSTREAM),
        (503, "unavailable", StatusCause.UPSTREAM),
        (400, "Invalid prompt", None),
        (404, "model not found", None),
        (422, "unprocessable", None),
    ],
)
def test_http_status_errors_are_classified(status: int, body: str, cause: StatusCause) -> None:
    failure = classify(_status_error(status, body))
    assert (failure.cause if failure else None) is cause
    if failure is not None:
        assert failure.detail == str(status)


def test_network_failures_are_the_routes() -> None:
    with httpx.Client(timeout=1) as http, pytest.raises(httpx.TransportError) as caught:
        http.get(f"http://127.0.0.1:{free_port()}/")
    failure = classify(caught.value)
    assert failure is not None
    assert (failure.cause, failure.detail) == (StatusCause.NETWORK, "connection")
    timeout = classify(httpx.ReadTimeout("timed out"))
    assert timeout is not None
    assert timeout.detail == "timeout"


def test_retry_after_is_read_and_bounded() -> None:
    failure = classify(_status_error(429, "slow down", {"Retry-After": "7"}))
    assert failure is not None
    assert failure.retry_after == 7
    assert parse_retry_after("86400") == MAX_RETRY_AFTER_SECONDS
    assert parse_retry_after("-3") == 0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470) == 10
    for junk in ("soon", "", "nan", "1" * 100, None):
        assert parse_retry_after(junk) is None


def test_breaker_settings_are_checked() -> None:
    assert BreakerSettings().cooldown(1) == 5
    assert BreakerSettings().cooldown(3) == 20
    assert BreakerSettings().cooldown(100) == 300
    with pytest.raises(ValueError, match="failure_threshold"):
        BreakerSettings(failure_threshold=0)
    with pytest.raises(ValueError, match="max_cooldown_seconds"):
        BreakerSettings(base_cooldown_seconds=10, max_cooldown_seconds=1)


def test_with_fallback_serves_any_rest_call_from_a_key_pool(fake_providers: FakeProviders) -> None:
    first, second = "suno-first-key-0001", "suno-second-key-0002"
    fake_providers.fail_key(first, "quota")  # sunoapi.org: 429 "Insufficient credits"
    config = stage_config(
        ProviderKind.SUNO, "V5", first, route(ProviderKind.SUNO, "V5", second), stage=StageType.SONG
    )
    breakers = BreakerRegistry()
    credits = ProviderFactory.with_fallback(
        config,
        lambda client: client.request("GET", "/api/v1/generate/credit").json()["data"],
        env=fake_providers.env(),
        breakers=breakers,
    )
    assert credits == 100
    assert [r.header("authorization") for r in fake_providers.requests] == [
        f"Bearer {first}",
        f"Bearer {second}",
    ]
    (first_route, _) = breakers.drain(StageType.SONG, config.routes())
    assert first_route.last_failure_cause is StatusCause.QUOTA


@pytest.mark.parametrize(
    ("kind", "model", "failure", "expected"),
    [
        (ProviderKind.GEMINI, "gemini-2.5-flash", "invalid_key", "AUTH (400)"),
        (ProviderKind.GEMINI, "gemini-2.5-flash", "quota", "QUOTA (429)"),
        (ProviderKind.GEMINI, "gemini-2.5-flash", "rate_limit", "RATE_LIMIT (429)"),
        (ProviderKind.GEMINI, "gemini-2.5-flash", "permission", "PERMISSION (403)"),
        (ProviderKind.GEMINI, "gemini-2.5-flash", "region", "REGION (400)"),
        (ProviderKind.GEMINI, "gemini-2.5-flash", "server_error", "UPSTREAM (500)"),
        (ProviderKind.OPENAI, "gpt-4o", "invalid_key", "AUTH (401)"),
        (ProviderKind.OPENAI, "gpt-4o", "quota", "QUOTA (429)"),
        (ProviderKind.OPENAI, "gpt-4o", "rate_limit", "RATE_LIMIT (429)"),
        (ProviderKind.OPENAI, "gpt-4o", "region", "REGION (403)"),
        (ProviderKind.OPENAI, "gpt-4o", "server_error", "UPSTREAM (500)"),
        (ProviderKind.YANDEX_GPT, "yandexgpt/latest", "quota", "QUOTA (429)"),
    ],
)
def test_the_sdks_failures_are_classified(
    fake_providers: FakeProviders, kind: ProviderKind, model: str, failure: str, expected: str
) -> None:
    """What each provider really answers (the fakes' wire formats), through the real SDK."""
    fake_providers.set_failure(kind, failure)
    config = stage_config(kind, model, PRIMARY_KEY)
    poet = ProviderFactory.text_generator(
        config, env=fake_providers.env(), breakers=BreakerRegistry()
    )
    with pytest.raises(AllRoutesFailed) as caught:
        poet.generate("x")
    assert str(caught.value) == f"every route of POEM failed: primary {kind.value}: {expected}"
    assert fake_providers.count(kind) == 1  # the SDK did not retry
