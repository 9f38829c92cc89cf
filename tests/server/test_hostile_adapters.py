"""Every adapter against a hostile provider: what it answers, it must not get stored.

A real local HTTP server (``tests.fakes.hostile_provider``) answers with huge ids,
huge lists, control characters, oversized or dripping bodies and cross-origin
redirects; each adapter must turn every one into ERROR with a reason, read a bounded
number of bytes, and never send a header to another origin.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers import ProviderCredentials, ProviderFailure, build_adapters
from stageconfig_server.providers.guard import MAX_MODELS
from tests.fakes.hostile_provider import GOOD_GEMINI, GOOD_MODELS, HostileProvider

KEY = "sk-hostile-0123456789abcdefABCDEF"
CREDENTIALS = ProviderCredentials(KEY, {"folder_id": "b1gfolder"})
TIMEOUT = 2.0
"""The bound the drip and endless-body cases are timed against."""
GENEROUS = 10.0
"""Where the point is the refusal's reason, not its time (a loaded machine parses slowly)."""

LISTING_KINDS = (ProviderKind.OPENAI, ProviderKind.GEMINI, ProviderKind.YANDEX_GPT)
NETWORK_KINDS = (*LISTING_KINDS, ProviderKind.SUNO, ProviderKind.PIKA)


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileProvider]:
    with HostileProvider() as server:
        yield server


@pytest.fixture(autouse=True)
def _reset(hostile: HostileProvider) -> None:
    hostile.behave("ok")
    hostile.main_requests.clear()
    hostile.elsewhere_requests.clear()


async def _refused(
    hostile: HostileProvider, kind: ProviderKind, adapter_timeout: float = GENEROUS
) -> ProviderFailure:
    adapter = build_adapters(hostile.base_urls(), timeout_seconds=adapter_timeout)[kind]
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(CREDENTIALS)
    failure = caught.value
    assert failure.status is ConfigStatus.ERROR
    assert KEY not in failure.message
    assert len(failure.message) < 400
    return failure


def _names(kind: ProviderKind, count: int, width: int = 8) -> list[str]:
    stem = "gemini-" if kind is ProviderKind.GEMINI else "gpt-"
    return [f"{stem}{i:0{width}d}" for i in range(count)]


@pytest.mark.parametrize("kind", LISTING_KINDS)
async def test_a_good_answer_still_works(hostile: HostileProvider, kind: ProviderKind) -> None:
    adapter = build_adapters(hostile.base_urls(), timeout_seconds=GENEROUS)[kind]
    expected = GOOD_GEMINI if kind is ProviderKind.GEMINI else GOOD_MODELS
    assert await adapter.list_models(CREDENTIALS) == list(expected)


@pytest.mark.parametrize("kind", NETWORK_KINDS)
async def test_a_cross_origin_redirect_is_an_error_and_no_header_leaves(
    hostile: HostileProvider, kind: ProviderKind
) -> None:
    hostile.behave("redirect")
    failure = await _refused(hostile, kind)
    assert failure.cause is StatusCause.UPSTREAM
    assert "redirected to another origin" in failure.message
    assert hostile.main_requests, "the provider was asked"
    # The other origin received nothing at all: no request, so no key header.
    assert hostile.elsewhere_requests == []


@pytest.mark.parametrize("kind", LISTING_KINDS)
async def test_a_huge_model_id_is_refused(hostile: HostileProvider, kind: ProviderKind) -> None:
    hostile.behave("huge_id")
    failure = await _refused(hostile, kind)
    assert "answer larger than" in failure.message


@pytest.mark.parametrize("kind", LISTING_KINDS)
async def test_an_id_over_256_characters_is_refused(
    hostile: HostileProvider, kind: ProviderKind
) -> None:
    stem = "gemini-" if kind is ProviderKind.GEMINI else "gpt-"
    hostile.behave("models", models=[*_names(kind, 2), stem + "a" * 300])
    failure = await _refused(hostile, kind)
    assert "at most 256" in failure.message


@pytest.mark.parametrize("kind", LISTING_KINDS)
@pytest.mark.parametrize("bad", ["\x1b]0;pwned\x07", "\x1b[31m", " spaced", "\u202eevil", "é"])
async def test_ids_with_control_or_foreign_characters_are_refused(
    hostile: HostileProvider, kind: ProviderKind, bad: str
) -> None:
    stem = "gemini-" if kind is ProviderKind.GEMINI else "gpt-"
    hostile.behave("models", models=[*_names(kind, 2), f"{stem}x{bad}"])
    failure = await _refused(hostile, kind)
    assert "characters a model id cannot use" in failure.message
    assert "\x1b" not in failure.message
    assert "\x07" not in failure.message


@pytest.mark.parametrize("kind", LISTING_KINDS)
async def test_a_list_over_the_cap_is_refused_and_the_overflow_reported(
    hostile: HostileProvider, kind: ProviderKind
) -> None:
    hostile.behave("models", models=_names(kind, MAX_MODELS + 1))
    failure = await _refused(hostile, kind)
    assert f"more than {MAX_MODELS} models offered" in failure.message


@pytest.mark.parametrize("kind", LISTING_KINDS)
async def test_a_list_at_the_cap_is_kept(hostile: HostileProvider, kind: ProviderKind) -> None:
    hostile.behave("models", models=_names(kind, MAX_MODELS))
    adapter = build_adapters(hostile.base_urls(), timeout_seconds=GENEROUS)[kind]
    assert len(await adapter.list_models(CREDENTIALS)) == MAX_MODELS


@pytest.mark.parametrize("kind", NETWORK_KINDS)
async def test_a_body_without_end_stops_at_the_cap(
    hostile: HostileProvider, kind: ProviderKind
) -> None:
    hostile.behave("huge_body")
    started = time.monotonic()
    failure = await _refused(hostile, kind, TIMEOUT)
    assert "answer larger than" in failure.message
    assert time.monotonic() - started < TIMEOUT + 3


@pytest.mark.parametrize("kind", NETWORK_KINDS)
async def test_a_dripping_answer_ends_within_the_timeout(
    hostile: HostileProvider, kind: ProviderKind
) -> None:
    hostile.behave("drip")
    started = time.monotonic()
    failure = await _refused(hostile, kind, TIMEOUT)
    assert failure.cause in (StatusCause.NETWORK, StatusCause.UPSTREAM)
    assert time.monotonic() - started < TIMEOUT + 3


async def test_the_environments_proxy_is_used_through_the_guard(
    hostile: HostileProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The "other origin" plays an HTTP proxy: the request reaches it in absolute form.
    monkeypatch.setenv("HTTP_PROXY", hostile.elsewhere_origin)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    adapter = build_adapters(hostile.base_urls(), timeout_seconds=GENEROUS)[ProviderKind.OPENAI]
    assert await adapter.list_models(CREDENTIALS) == list(GOOD_MODELS)
    ((path, _headers),) = hostile.elsewhere_requests
    assert path == hostile.base_url(ProviderKind.OPENAI) + "/models"
    assert hostile.main_requests == []
