"""What every adapter promises, checked across all kinds at once."""

from __future__ import annotations

import time

import pytest

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers import (
    ProviderAdapter,
    ProviderCredentials,
    ProviderFailure,
    build_adapters,
)
from tests.fakes.provider_server import SUPPORTED_FAILURES, FakeProviders

from .conftest import ADAPTER_TIMEOUT, FOLDER_ID, HANG_TIMEOUT, SECRET_KEY

NETWORKED = [kind for kind in ProviderKind if kind is not ProviderKind.SPEECHKIT]

YANDEX_FALLBACKS = {"listing_unavailable", "not_implemented"}  # served the static list

EVERY_FAILURE = [
    (kind, failure)
    for kind in NETWORKED
    for failure in sorted(SUPPORTED_FAILURES[kind])
    # "hang" is covered (with its timing) below; Yandex's fallbacks do not fail.
    if failure != "hang" and not (kind is ProviderKind.YANDEX_GPT and failure in YANDEX_FALLBACKS)
]


@pytest.mark.parametrize(("kind", "failure"), EVERY_FAILURE)
async def test_failure_message_never_contains_the_key(
    adapters: dict[ProviderKind, ProviderAdapter],
    fake: FakeProviders,
    credentials: ProviderCredentials,
    kind: ProviderKind,
    failure: str,
) -> None:
    fake.set_failure(kind, failure)
    with pytest.raises(ProviderFailure) as caught:
        await adapters[kind].list_models(credentials)
    assert SECRET_KEY not in caught.value.message
    assert SECRET_KEY not in str(caught.value)
    assert SECRET_KEY not in repr(caught.value)
    assert caught.value.message.endswith(".")


# The "slower than the timeout" row of every adapter's table lives here, once per kind.
@pytest.mark.parametrize("kind", NETWORKED)
async def test_slower_than_timeout_is_network_error_within_bound(
    fake: FakeProviders,
    credentials: ProviderCredentials,
    kind: ProviderKind,
) -> None:
    fake.set_failure(kind, "hang")
    adapter = build_adapters(fake.base_urls(), timeout_seconds=HANG_TIMEOUT)[kind]
    started = time.monotonic()
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(credentials)
    elapsed = time.monotonic() - started
    assert (caught.value.status, caught.value.cause) == (ConfigStatus.ERROR, StatusCause.NETWORK)
    # Bounded by the timeout, not hanging (the margin absorbs a loaded machine).
    assert HANG_TIMEOUT <= elapsed < HANG_TIMEOUT + 5.0
    assert len(fake.requests) == 1  # no retry


@pytest.mark.parametrize("kind", NETWORKED)
async def test_refused_connection_is_network_error(
    refused_port: int, credentials: ProviderCredentials, kind: ProviderKind
) -> None:
    root = f"http://127.0.0.1:{refused_port}"
    suffix = "/v1" if kind in (ProviderKind.OPENAI, ProviderKind.YANDEX_GPT) else ""
    adapter = build_adapters({kind: root + suffix}, timeout_seconds=ADAPTER_TIMEOUT)[kind]
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(credentials)
    assert (caught.value.status, caught.value.cause) == (ConfigStatus.ERROR, StatusCause.NETWORK)
    assert "could not be reached" in caught.value.message


@pytest.mark.parametrize("kind", list(ProviderKind))
async def test_empty_key_is_invalid_without_a_request(
    adapters: dict[ProviderKind, ProviderAdapter], fake: FakeProviders, kind: ProviderKind
) -> None:
    with pytest.raises(ProviderFailure) as caught:
        await adapters[kind].list_models(ProviderCredentials("", {"folder_id": FOLDER_ID}))
    assert (caught.value.status, caught.value.cause) == (ConfigStatus.INVALID, StatusCause.AUTH)
    assert fake.requests == []


@pytest.mark.parametrize("kind", list(ProviderKind))
async def test_every_adapter_lists_something_for_a_good_key(
    adapters: dict[ProviderKind, ProviderAdapter],
    credentials: ProviderCredentials,
    kind: ProviderKind,
) -> None:
    models = await adapters[kind].list_models(credentials)
    assert models
    assert all(isinstance(m, str) and m for m in models)
    assert len(models) == len(set(models))
