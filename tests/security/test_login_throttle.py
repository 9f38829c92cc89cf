"""The admin web page throttles failed logins per client address (issue 19, item 8):
after five refused tokens in a minute, the next attempt gets 429 with Retry-After and
is not even checked — the right token included — while other addresses are unaffected.
Real processes: a server that checks tokens, ``scripts/admin-web``, HTTP over loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stageconfig_web.login import FAILED_LOGIN_WINDOW_SECONDS, MAX_FAILED_LOGINS, LoginThrottle
from tests.admin.conftest import ADMIN_TOKEN, TOKENS, start_server
from tests.admin.web_process import WebProcess, log_in_over_http
from tests.fakes.provider_server import FakeProviders


@pytest.fixture
def web(tmp_path: Path, fake_providers: FakeProviders) -> Iterator[WebProcess]:
    """The admin page in front of a server that checks tokens."""
    server = start_server(tmp_path / "stageconfig.db", fake_providers, tokens=TOKENS)
    try:
        page = WebProcess(server.target)
        try:
            yield page
        finally:
            page.stop()
    finally:
        server.stop()


def test_failed_logins_are_throttled_per_address(web: WebProcess) -> None:
    with httpx.Client(base_url=web.url) as client:
        for attempt in range(MAX_FAILED_LOGINS):
            refused = log_in_over_http(client, f"guess-{attempt:04d}-0000000000")
            assert refused.status_code == 401, attempt
        throttled = log_in_over_http(client, ADMIN_TOKEN)  # even the right one waits
        assert throttled.status_code == 429
        retry_after = int(throttled.headers["Retry-After"])
        assert 1 <= retry_after <= FAILED_LOGIN_WINDOW_SECONDS
        assert "Too many refused tokens" in throttled.text
    # Another client address is not held back (127.0.0.2 is loopback too).
    other_address = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=web.url, transport=other_address) as client:
        assert log_in_over_http(client, ADMIN_TOKEN).status_code in (302, 303)


def test_the_window_slides_and_a_success_starts_over() -> None:
    now = [0.0]
    throttle = LoginThrottle(max_failures=3, window_seconds=60, clock=lambda: now[0])
    for second in (0, 10, 20):
        now[0] = second
        assert throttle.retry_after("a") is None
        throttle.failed("a")
    now[0] = 30
    assert throttle.retry_after("a") == pytest.approx(30)  # the first failure leaves at 60
    assert throttle.retry_after("b") is None
    now[0] = 60
    assert throttle.retry_after("a") is None
    throttle.failed("a")
    throttle.succeeded("a")
    throttle.failed("a")
    throttle.failed("a")
    assert throttle.retry_after("a") is None
