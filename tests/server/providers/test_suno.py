"""SunoAdapter against the fake sunoapi.org gateway."""

from __future__ import annotations

import pytest

from stageconfig_server.domain import ConfigStatus, ProviderKind, StatusCause
from stageconfig_server.providers import ProviderCredentials, ProviderFailure, SunoAdapter
from stageconfig_server.providers.suno import DEFAULT_BASE_URL
from tests.fakes.provider_server import FakeProviders

from .conftest import ADAPTER_TIMEOUT, SECRET_KEY


@pytest.fixture
def adapter(fake: FakeProviders) -> SunoAdapter:
    return SunoAdapter(fake.base_url(ProviderKind.SUNO), timeout_seconds=ADAPTER_TIMEOUT)


async def test_accepted_key_gives_static_models_newest_first(
    adapter: SunoAdapter, credentials: ProviderCredentials
) -> None:
    assert await adapter.list_models(credentials) == ["V5_5", "V5", "V4_5PLUS", "V4_5", "V4"]


async def test_key_checked_on_credit_endpoint_as_bearer(
    adapter: SunoAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    await adapter.list_models(credentials)
    (request,) = fake.requests
    assert (request.method, request.path) == ("GET", "/api/v1/generate/credit")
    assert request.header("Authorization") == f"Bearer {SECRET_KEY}"


@pytest.mark.parametrize(
    ("failure", "status", "cause"),
    [
        ("invalid_key", ConfigStatus.INVALID, StatusCause.AUTH),  # HTTP 401
        ("body_error_401", ConfigStatus.INVALID, StatusCause.AUTH),  # HTTP 200, code 401
        ("quota", ConfigStatus.ERROR, StatusCause.QUOTA),  # HTTP 429 "insufficient credits"
        ("body_error_429", ConfigStatus.ERROR, StatusCause.QUOTA),  # HTTP 200, code 429
        ("rate_limit", ConfigStatus.ERROR, StatusCause.RATE_LIMIT),  # HTTP 200, code 430
        ("body_error_455", ConfigStatus.ERROR, StatusCause.UPSTREAM),  # maintenance
        ("server_error", ConfigStatus.ERROR, StatusCause.UPSTREAM),
        ("malformed", ConfigStatus.ERROR, StatusCause.UPSTREAM),
    ],
)
async def test_failure_table(
    adapter: SunoAdapter,
    fake: FakeProviders,
    credentials: ProviderCredentials,
    failure: str,
    status: ConfigStatus,
    cause: StatusCause,
) -> None:
    fake.set_failure(ProviderKind.SUNO, failure)
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(credentials)
    assert (caught.value.status, caught.value.cause) == (status, cause)
    assert SECRET_KEY not in caught.value.message  # the fake's 401 echoes the key


async def test_http_200_with_error_code_names_both(
    adapter: SunoAdapter, fake: FakeProviders, credentials: ProviderCredentials
) -> None:
    fake.set_failure(ProviderKind.SUNO, "body_error_455")
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(credentials)
    assert "HTTP 200, code 455" in caught.value.message
    assert "maintenance" in caught.value.message


async def test_rejected_key_is_invalid(adapter: SunoAdapter, fake: FakeProviders) -> None:
    fake.reject_key("suno-revoked")
    with pytest.raises(ProviderFailure) as caught:
        await adapter.list_models(ProviderCredentials("suno-revoked", {}))
    assert caught.value.status is ConfigStatus.INVALID


def test_default_base_url() -> None:
    assert SunoAdapter().base_url == DEFAULT_BASE_URL == "https://api.sunoapi.org"
